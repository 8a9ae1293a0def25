setup() {
  source ./hiker.sh
}

@test "life, the universe and everything" {
  [ "$(answer)" -eq 42 ]
}
