# Tests in plain sh: each test_ function is one test; assert_equals counts them.
. ./hiker.sh

passed=0
failed=0

assert_equals() { # expected actual what
  if [ "$1" = "$2" ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $3: expected $1, got $2"
  fi
}

test_life_the_universe_and_everything() {
  assert_equals 42 "$(answer)" 'answer'
}

test_life_the_universe_and_everything

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
