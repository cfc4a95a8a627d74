module github.com/payonce/payonce/bench/ring

go 1.26.0

require (
	github.com/buraksezer/consistent v0.10.0
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/dgryski/go-maglev v0.0.0-20200611225407-8961b9b1b8e6
	github.com/golang/groupcache v0.0.0-20241129210726-2c02b8208cf8
	github.com/payonce/payonce v0.0.0
)

require github.com/dchest/siphash v1.2.3 // indirect

replace github.com/payonce/payonce => ../..
