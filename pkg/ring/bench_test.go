package ring

import (
	"fmt"
	"testing"
)

var benchKeys = func() []string {
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("customer-%08d", i)
	}
	return keys
}()

func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		s := mustBuild(b, names("node", n))
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Owner(benchKeys[i&4095])
				i++
			}
		})
	}
}

func BenchmarkSuccessors3(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		s := mustBuild(b, names("node", n))
		buf := make([]string, 0, 3)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				buf = s.Successors(benchKeys[i&4095], 3, buf)
				i++
			}
		})
	}
}

// BenchmarkRebalanceJoin measures one membership change: the time from the
// new member list to a snapshot ready to swap in.
func BenchmarkRebalanceJoin(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		s := mustBuild(b, names("node", n))
		joined := append(names("node", n), Member{Name: "joiner"})
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Rebalance(s, joined); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRebalanceLeave(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		s := mustBuild(b, names("node", n))
		left := names("node", n)[1:]
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Rebalance(s, left); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		members := names("node", n)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Build(members); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
