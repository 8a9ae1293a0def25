# -Werror: a warning stops the build (amber) rather than hiding a bug
g++ -std=c++17 -Wall -Wextra -Werror -O0 -o tests.out *.cpp -lgtest -lgtest_main -pthread && ./tests.out
