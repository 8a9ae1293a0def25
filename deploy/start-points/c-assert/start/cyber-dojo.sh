# -Werror: a warning stops the build (amber) rather than hiding a bug
gcc -std=c11 -Wall -Wextra -Werror -O0 -o tests.out *.c && ./tests.out
