# Each test file runs in its own ruby; the run fails when any of them does.
for file in *test*.rb; do ruby "$file" || status=$?; done
exit "${status:-0}"
