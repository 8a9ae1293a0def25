# node's built-in runner: runs every *.test.js, reporting TAP (stdout is not a terminal)
node --test
