// Command ring measures payonce's pkg/ring side by side with well-known Go
// consistent-hashing implementations, in one process and one run, and
// prints a markdown table: lookup cost, balance over random keys, keys moved
// by one join and one leave, retained heap, and the time to apply a change.
//
//	cd bench/ring && go run . [-keys 1000000] [-members 10,100,1000]
//
// It lives in its own module so that the main module does not depend on
// the rings it is compared with.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ring bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("ring", flag.ContinueOnError)
	keyCount := flags.Int("keys", 1_000_000, "random keys for the balance and movement figures")
	memberList := flags.String("members", "10,100,1000", "comma-separated ring sizes")
	only := flags.String("only", "", "measure only contenders whose name contains this")
	if err := flags.Parse(args); err != nil {
		return err
	}
	var sizes []int
	for _, f := range strings.Split(*memberList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return fmt.Errorf("bad ring size %q", f)
		}
		sizes = append(sizes, n)
	}

	keys, keyBytes := randomKeys(*keyCount)
	fmt.Fprintf(stdout, "%s %s/%s, GOMAXPROCS=%d, %d random keys\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), len(keys))
	fmt.Fprintln(stdout, "| ring | members | Owner ns/op | allocs/op | Successors(3) ns/op | max/mean | stddev/mean | join moved ×ideal | leave moved ×ideal | stray moves join / leave | heap KiB | join / leave µs |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, n := range sizes {
		for _, c := range contenders {
			if !strings.Contains(c.name, *only) {
				continue
			}
			row := measure(c, n, keys, keyBytes)
			fmt.Fprintln(stdout, row)
		}
	}
	fmt.Fprintln(stdout)
	for _, c := range contenders {
		if strings.Contains(c.name, *only) {
			var configs []string
			for _, n := range sizes {
				configs = append(configs, fmt.Sprintf("%d members: %s", n, c.config(n)))
			}
			if first := c.config(sizes[0]); !slices.ContainsFunc(sizes, func(n int) bool { return c.config(n) != first }) {
				configs = []string{first}
			}
			fmt.Fprintf(stdout, "- %s: %s\n", c.name, strings.Join(configs, "; "))
		}
	}
	fmt.Fprintln(stdout, "\nideal: a join moves 1/(N+1) of the keys, a leave 1/N; a stray move is a key moving between two members that did not change, in % of all keys.")
	return nil
}

// randomKeys returns customer-like keys from a fixed seed, so that every
// run measures the same keys.
func randomKeys(n int) ([]string, [][]byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, n)
	keyBytes := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("customer-%016x", rng.Uint64())
		keyBytes[i] = []byte(keys[i])
	}
	return keys, keyBytes
}

var sink string

func measure(c contender, n int, keys []string, keyBytes [][]byte) string {
	members := names(n)

	// Retained heap: what one ring keeps alive after a collection.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := c.build(members)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapKiB := max(0, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1024)

	lookupKeys, lookupBytes := keys[:min(len(keys), 1<<16)], keyBytes[:min(len(keys), 1<<16)]
	mask := len(lookupKeys) - 1
	lookupNs, lookupAllocs := timeLookups(func(i int) {
		k := i & mask
		sink = r.owner(lookupKeys[k], lookupBytes[k])
	})
	successors := "—"
	if r.successors3(keys[0], keyBytes[0], nil) != nil {
		buf := make([]string, 0, 3)
		ns, allocs := timeLookups(func(i int) {
			k := i & mask
			buf = r.successors3(lookupKeys[k], lookupBytes[k], buf)
		})
		successors = fmt.Sprintf("%.1f (%.0f allocs)", ns, allocs)
	}

	owners := ownersOf(r, keys, keyBytes)
	maxOverMean, sdOverMean := balance(members, owners)

	const joiner = "joiner"
	leaver := members[n/2]
	joined, joinTime := timedChange(c, members, func(r hashRing) hashRing { return r.join(joiner) })
	left, leaveTime := timedChange(c, members, func(r hashRing) hashRing { return r.leave(leaver) })
	joinMoved, joinStray := movement(owners, ownersOf(joined, keys, keyBytes), joiner)
	leaveMoved, leaveStray := movement(owners, ownersOf(left, keys, keyBytes), leaver)
	k := float64(len(keys))

	return fmt.Sprintf("| %s | %d | %.1f | %.0f | %s | %.3f | %.3f | %.2f | %.2f | %.3f%% / %.3f%% | %.0f | %s / %s |",
		c.name, n,
		lookupNs, lookupAllocs,
		successors,
		maxOverMean, sdOverMean,
		float64(joinMoved)/(k/float64(n+1)), float64(leaveMoved)/(k/float64(n)),
		100*float64(joinStray)/k, 100*float64(leaveStray)/k,
		heapKiB,
		micros(joinTime), micros(leaveTime))
}

// timeLookups returns the nanoseconds per call of lookup and its
// allocations per call. The machine is shared, so it times seven rounds of
// about 30 ms each and keeps the fastest: interference only ever adds time.
func timeLookups(lookup func(i int)) (nsPerOp, allocsPerOp float64) {
	allocsPerOp = testing.AllocsPerRun(1000, func() { lookup(12345) })
	runtime.GC()
	calls := 1 << 10
	for {
		start := time.Now()
		for i := range calls {
			lookup(i)
		}
		if elapsed := time.Since(start); elapsed > 30*time.Millisecond {
			nsPerOp = float64(elapsed.Nanoseconds()) / float64(calls)
			break
		}
		calls *= 2
	}
	for range 6 {
		start := time.Now()
		for i := range calls {
			lookup(i)
		}
		nsPerOp = min(nsPerOp, float64(time.Since(start).Nanoseconds())/float64(calls))
	}
	return nsPerOp, allocsPerOp
}

func micros(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Nanoseconds())/1000, 'f', 0, 64)
}

// timedChange builds a fresh ring three times and times one change on
// each, returning the last result and the median time; building afresh
// keeps implementations that mutate in place comparable with those that do
// not.
func timedChange(c contender, members []string, change func(hashRing) hashRing) (hashRing, time.Duration) {
	var times []time.Duration
	var result hashRing
	for range 3 {
		r := c.build(members)
		runtime.GC() // the 1M keys are a large live heap: keep a collection out of the timing
		start := time.Now()
		result = change(r)
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return result, times[1]
}

func ownersOf(r hashRing, keys []string, keyBytes [][]byte) []string {
	owners := make([]string, len(keys))
	for i := range keys {
		owners[i] = r.owner(keys[i], keyBytes[i])
	}
	return owners
}

// balance returns the busiest member's key count over the mean, and the
// standard deviation over the mean.
func balance(members, owners []string) (maxOverMean, sdOverMean float64) {
	counts := make(map[string]int, len(members))
	for _, m := range members {
		counts[m] = 0
	}
	for _, o := range owners {
		counts[o]++
	}
	mean := float64(len(owners)) / float64(len(members))
	var most int
	var sumSq float64
	for _, c := range counts {
		most = max(most, c)
		sumSq += (float64(c) - mean) * (float64(c) - mean)
	}
	return float64(most) / mean, math.Sqrt(sumSq/float64(len(members))) / mean
}

// movement counts keys whose owner changed, and among them the strays:
// keys that moved between two members neither of which is the one that
// joined or left.
func movement(before, after []string, changed string) (moved, stray int) {
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		moved++
		if before[i] != changed && after[i] != changed {
			stray++
		}
	}
	return moved, stray
}
