package main

import (
	"fmt"
	"math/big"
	"slices"
	"strconv"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
	"github.com/dgryski/go-maglev"
	"github.com/golang/groupcache/consistenthash"

	"github.com/payonce/payonce/pkg/ring"
)

// A contender is one consistent-hashing implementation under test. build
// makes a fresh ring; join and leave return the ring after one change (they
// may modify r, which the harness never reuses afterwards).
type contender struct {
	name   string
	config func(members int) string
	build  func(members []string) hashRing
}

type hashRing interface {
	owner(key string, keyBytes []byte) string
	join(name string) hashRing
	leave(name string) hashRing
	// successors3 returns the first three distinct members for key, or nil
	// if the implementation has no such operation.
	successors3(key string, keyBytes []byte, buf []string) []string
}

var contenders = []contender{
	{
		name: "payonce/pkg/ring",
		config: func(n int) string {
			s, _ := ring.Build(membersOf(names(n)))
			return fmt.Sprintf("%d slots", s.SlotCount())
		},
		build: buildPayonce,
	},
	{
		// The same package used without history: every change rebuilds the
		// canonical table. Lookups are identical; this row shows what the
		// minimal-movement Rebalance saves.
		name:   "payonce/pkg/ring Build-only",
		config: func(n int) string { return "ring.Build on every change" },
		build:  func(names []string) hashRing { return buildOnly{buildPayonce(names).(*payonceRing)} },
	},
	{
		name:   "groupcache/consistenthash",
		config: func(int) string { return "100 replicas, crc32" },
		build:  buildGroupcache,
	},
	{
		name:   "buraksezer/consistent",
		config: func(n int) string { return fmt.Sprintf("%d partitions, RF 20, load 1.25", partitionsFor(n)) },
		build:  buildBuraksezer,
	},
	{
		name:   "dgryski/go-maglev",
		config: func(int) string { return fmt.Sprintf("M=%d", maglev.SmallM) },
		build:  buildMaglev,
	},
	{
		name:   "jump hash",
		config: func(int) string { return "Lamping & Veach; leave swaps in the last bucket" },
		build:  buildJump,
	},
	{
		name:   "rendezvous",
		config: func(int) string { return "highest random weight, O(N) lookup" },
		build:  buildRendezvous,
	},
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "node-" + strconv.Itoa(i)
	}
	return out
}

func membersOf(names []string) []ring.Member {
	members := make([]ring.Member, len(names))
	for i, n := range names {
		members[i] = ring.Member{Name: n}
	}
	return members
}

func without(names []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name })
}

// payonce: immutable snapshots; a change is a Rebalance from the previous
// snapshot.
type payonceRing struct {
	names    []string
	snapshot *ring.Snapshot
}

func buildPayonce(names []string) hashRing {
	s, err := ring.Build(membersOf(names))
	if err != nil {
		panic(err)
	}
	return &payonceRing{names: names, snapshot: s}
}

func (r *payonceRing) owner(key string, _ []byte) string {
	o, _ := r.snapshot.Owner(key)
	return o
}

func (r *payonceRing) change(names []string) hashRing {
	s, err := ring.Rebalance(r.snapshot, membersOf(names))
	if err != nil {
		panic(err)
	}
	return &payonceRing{names: names, snapshot: s}
}

func (r *payonceRing) join(name string) hashRing {
	return r.change(append(slices.Clone(r.names), name))
}
func (r *payonceRing) leave(name string) hashRing { return r.change(without(r.names, name)) }
func (r *payonceRing) successors3(key string, _ []byte, buf []string) []string {
	return r.snapshot.Successors(key, 3, buf)
}

type buildOnly struct{ *payonceRing }

func (r buildOnly) join(name string) hashRing {
	return buildOnly{buildPayonce(append(slices.Clone(r.names), name)).(*payonceRing)}
}
func (r buildOnly) leave(name string) hashRing {
	return buildOnly{buildPayonce(without(r.names, name)).(*payonceRing)}
}

// groupcache: a sorted ring of crc32 points; it has no Remove, so a leave
// rebuilds without the member, as a user of it would.
type groupcacheRing struct {
	names []string
	m     *consistenthash.Map
}

func buildGroupcache(names []string) hashRing {
	m := consistenthash.New(100, nil)
	m.Add(names...)
	return &groupcacheRing{names: names, m: m}
}

func (r *groupcacheRing) owner(key string, _ []byte) string { return r.m.Get(key) }
func (r *groupcacheRing) join(name string) hashRing {
	r.m.Add(name)
	r.names = append(slices.Clone(r.names), name)
	return r
}
func (r *groupcacheRing) leave(name string) hashRing                    { return buildGroupcache(without(r.names, name)) }
func (r *groupcacheRing) successors3(string, []byte, []string) []string { return nil }

// buraksezer/consistent: partitions placed on a ring with bounded loads.
type member string

func (m member) String() string { return string(m) }

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// partitionsFor gives buraksezer/consistent about as many partitions per
// member as payonce has slots, so granularity is not what separates them.
func partitionsFor(members int) int {
	p := big.NewInt(int64(128 * members))
	for !p.ProbablyPrime(20) {
		p.Add(p, big.NewInt(1))
	}
	return int(p.Int64())
}

func buildBuraksezer(names []string) hashRing {
	members := make([]consistent.Member, len(names))
	for i, n := range names {
		members[i] = member(n)
	}
	c := consistent.New(members, consistent.Config{
		Hasher:            xxhasher{},
		PartitionCount:    partitionsFor(len(names)),
		ReplicationFactor: 20,
		Load:              1.25,
	})
	return &buraksezerRing{c: c}
}

type buraksezerRing struct{ c *consistent.Consistent }

func (r *buraksezerRing) owner(_ string, key []byte) string { return r.c.LocateKey(key).String() }
func (r *buraksezerRing) join(name string) hashRing         { r.c.Add(member(name)); return r }
func (r *buraksezerRing) leave(name string) hashRing        { r.c.Remove(name); return r }
func (r *buraksezerRing) successors3(_ string, key []byte, buf []string) []string {
	ms, err := r.c.GetClosestN(key, 3)
	if err != nil {
		panic(err)
	}
	buf = buf[:0]
	for _, m := range ms {
		buf = append(buf, m.String())
	}
	return buf
}

// Maglev (Eisenbud et al., NSDI'16) as implemented by dgryski/go-maglev,
// looked up with the same XXH64 key hash as payonce. A change repopulates the
// table, which is what Maglev does.
type maglevRing struct {
	names []string
	t     *maglev.Table
}

func buildMaglev(names []string) hashRing {
	return &maglevRing{names: names, t: maglev.New(names, maglev.SmallM)}
}

func (r *maglevRing) owner(key string, _ []byte) string {
	return r.names[r.t.Lookup(xxhash.Sum64String(key))]
}
func (r *maglevRing) join(name string) hashRing {
	return buildMaglev(append(slices.Clone(r.names), name))
}
func (r *maglevRing) leave(name string) hashRing                    { return buildMaglev(without(r.names, name)) }
func (r *maglevRing) successors3(string, []byte, []string) []string { return nil }

// Jump consistent hash (Lamping & Veach 2014). Buckets are numbered, so
// removing a member from the middle moves the last member into its bucket,
// the usual way to use it with named members.
type jumpRing struct{ names []string }

func buildJump(names []string) hashRing { return &jumpRing{names: names} }

func jump(key uint64, buckets int) int {
	var b, j int64 = -1, 0
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

func (r *jumpRing) owner(key string, _ []byte) string {
	return r.names[jump(xxhash.Sum64String(key), len(r.names))]
}
func (r *jumpRing) join(name string) hashRing {
	return &jumpRing{names: append(slices.Clone(r.names), name)}
}
func (r *jumpRing) leave(name string) hashRing {
	names := slices.Clone(r.names)
	i := slices.Index(names, name)
	names[i] = names[len(names)-1]
	return &jumpRing{names: names[:len(names)-1]}
}
func (r *jumpRing) successors3(string, []byte, []string) []string { return nil }

// Rendezvous (highest random weight) hashing: every member scores every key
// and the best score wins.
type rendezvousRing struct {
	names  []string
	hashes []uint64
}

func buildRendezvous(names []string) hashRing {
	r := &rendezvousRing{names: names, hashes: make([]uint64, len(names))}
	for i, n := range names {
		r.hashes[i] = xxhash.Sum64String(n)
	}
	return r
}

func mix(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func (r *rendezvousRing) owner(key string, _ []byte) string {
	h := xxhash.Sum64String(key)
	best, bestScore := 0, uint64(0)
	for i, mh := range r.hashes {
		if s := mix(h ^ mh); s > bestScore {
			best, bestScore = i, s
		}
	}
	return r.names[best]
}
func (r *rendezvousRing) join(name string) hashRing {
	return buildRendezvous(append(slices.Clone(r.names), name))
}
func (r *rendezvousRing) leave(name string) hashRing                    { return buildRendezvous(without(r.names, name)) }
func (r *rendezvousRing) successors3(string, []byte, []string) []string { return nil }
