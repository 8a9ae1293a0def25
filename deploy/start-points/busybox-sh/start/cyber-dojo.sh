sh ./test_hiker.sh
