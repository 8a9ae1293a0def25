bats --tap *.bats
