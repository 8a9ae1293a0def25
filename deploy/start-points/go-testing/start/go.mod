module hiker

go 1.19
