// Command coordinator compares payonce's lock coordinator with etcd in one
// run, on one machine: two 3-node clusters on loopback, both fsyncing their
// logs, each driven through its ordinary client (pkg/lock over HTTP;
// clientv3 with concurrency.Mutex over gRPC). It prints acquire+release
// cycles per second and acquire latency at 1/4/16/64 clients, uncontended
// (a lock per client) and contended (one lock for all), then how long each
// cluster takes to grant locks again after its leader is killed.
//
// Run from this directory: go run . [-d 3s] [-store wal|bolt] [-failovers 5]
// [-systems payonce,etcd] [-clients 1,4,16,64] [-cpuprofile file]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

const ttl = 10 * time.Second

type options struct {
	dur        time.Duration
	store      string
	failovers  int
	systems    []string
	clients    []int
	cpuprofile string
	raftTiming time.Duration
	// uncontendedOnly skips the one-key runs (for profiling).
	uncontendedOnly bool
}

func main() {
	var o options
	var systems, clients string
	flag.DurationVar(&o.dur, "d", 3*time.Second, "duration of each measurement")
	flag.StringVar(&o.store, "store", raftnode.DefaultLogStore, "payonce's log store: wal or bolt")
	flag.IntVar(&o.failovers, "failovers", 5, "leader kills per system (the killed member restarts in between); 0 skips")
	flag.StringVar(&systems, "systems", "payonce,etcd", "systems to run, comma-separated: payonce, etcd, and, to see one layer alone, payonce-raft (the cluster driven in-process, without HTTP) and payonce-http (the HTTP API without Raft: stale reads)")
	flag.StringVar(&clients, "clients", "1,4,16,64", "client counts, comma-separated")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the throughput measurements to this file")
	flag.BoolVar(&o.uncontendedOnly, "uncontended-only", false, "skip the contended measurements")
	flag.DurationVar(&o.raftTiming, "raft-timeout", raftnode.DefaultHeartbeatTimeout, "payonce's heartbeat and election timeout (leader lease: half of it)")
	flag.Parse()
	o.systems = strings.Split(systems, ",")
	for _, c := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "-clients: %q is not a positive number\n", c)
			os.Exit(2)
		}
		o.clients = append(o.clients, n)
	}
	for _, name := range o.systems {
		if !slices.Contains([]string{"payonce", "etcd", "payonce-raft", "payonce-http"}, name) {
			fmt.Fprintf(os.Stderr, "-systems: unknown system %q (payonce, etcd, payonce-raft, payonce-http)\n", name)
			os.Exit(2)
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// system is one cluster under test.
type system struct {
	name string
	// cycle acquires and releases key once and returns the acquire latency;
	// worker state (an etcd session) comes from newWorker.
	newWorker func(ctx context.Context) (cycle func(ctx context.Context, key string) (time.Duration, error), done func(), err error)
	// killLeader stops the leader abruptly and returns when it is gone,
	// with a function that starts the killed member again on its data.
	killLeader func() (restart func() error, err error)
	// healthy returns once every member runs, follows one leader and has
	// caught up with it.
	healthy func(ctx context.Context) error
	// hasLeader reports whether a running member is leader.
	hasLeader func() bool
	close     func()
}

func run(o options) error {
	base, err := os.MkdirTemp("", "coordbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	var systems []*system
	for _, name := range o.systems {
		var s *system
		switch name {
		case "payonce":
			s, err = startOurs(filepath.Join(base, "payonce"), o.store, o.raftTiming, "")
		case "payonce-raft":
			s, err = startOurs(filepath.Join(base, "payonce-raft"), o.store, o.raftTiming, "raft")
		case "payonce-http":
			s, err = startOurs(filepath.Join(base, "payonce-http"), o.store, o.raftTiming, "http")
		case "etcd":
			s, err = startEtcd(filepath.Join(base, "etcd"))
		}
		if err != nil {
			return fmt.Errorf("%s cluster: %w", name, err)
		}
		defer s.close()
		systems = append(systems, s)
	}

	fmt.Printf("%s %s/%s, GOMAXPROCS=%d, %v per cell, TTL %v, fsync on in both; payonce on %s with heartbeat/election %v/%v\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), o.dur, ttl, o.store,
		o.raftTiming, o.raftTiming)
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	fmt.Println("| system | load | clients | cycles/s | acquire p50 ms | acquire p99 ms |")
	fmt.Println("|---|---|---:|---:|---:|---:|")
	loads := []bool{false, true}
	if o.uncontendedOnly {
		loads = loads[:1]
	}
	for _, contended := range loads {
		for _, clients := range o.clients {
			// Alternate the order so neither system always runs second
			// on a machine whose load drifts.
			order := slices.Clone(systems)
			if clients%2 == 0 == contended {
				slices.Reverse(order)
			}
			for _, s := range order {
				r, err := measure(s, clients, contended, o.dur)
				if err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				load := "uncontended"
				if contended {
					load = "contended"
				}
				fmt.Printf("| %s | %s | %d | %.0f | %.2f | %.2f |\n", s.name, load, clients, r.rate, ms(r.p50), ms(r.p99))
			}
		}
	}
	if o.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if o.failovers < 1 {
		return nil
	}
	fmt.Println()
	fmt.Printf("| system | leader kills | locks granted again after the kill: median | min | max | new leader elected: median |\n")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, s := range systems {
		if s.name == "payonce-raft" || s.name == "payonce-http" {
			continue // layer measurements: nothing to fail over
		}
		var grants, elections []time.Duration
		for range o.failovers {
			g, e, err := failover(s)
			if err != nil {
				return fmt.Errorf("%s failover: %w", s.name, err)
			}
			grants, elections = append(grants, g), append(elections, e)
		}
		slices.Sort(grants)
		slices.Sort(elections)
		r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
		fmt.Printf("| %s | %d | %v | %v | %v | %v |\n", s.name, len(grants),
			r(grants[len(grants)/2]), r(grants[0]), r(grants[len(grants)-1]), r(elections[len(elections)/2]))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type result struct {
	rate     float64
	p50, p99 time.Duration
}

func measure(s *system, clients int, contended bool, dur time.Duration) (result, error) {
	ctx := context.Background()
	var (
		mu     sync.Mutex
		lats   []time.Duration
		wg     sync.WaitGroup
		stop   atomic.Bool
		errs   = make(chan error, clients)
		cycles atomic.Int64
	)
	workers := make([]func(context.Context, string) (time.Duration, error), clients)
	for i := range clients {
		cycle, done, err := s.newWorker(ctx)
		if err != nil {
			return result{}, err
		}
		defer done()
		workers[i] = cycle
	}
	start := time.Now()
	for i, cycle := range workers {
		key := fmt.Sprintf("bench-%d-%d", clients, i)
		if contended {
			key = fmt.Sprintf("bench-hot-%d", clients)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for !stop.Load() {
				lat, err := cycle(ctx, key)
				if err != nil {
					errs <- err
					return
				}
				mine = append(mine, lat)
				cycles.Add(1)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	time.Sleep(dur) // the measurement window itself
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return result{}, err
	default:
	}
	slices.Sort(lats)
	if len(lats) == 0 {
		return result{}, errors.New("no cycle completed")
	}
	return result{
		rate: float64(cycles.Load()) / elapsed.Seconds(),
		p50:  lats[len(lats)/2], p99: lats[len(lats)*99/100],
	}, nil
}

// failover waits for a healthy cluster, kills the leader and measures
// until a lock on a fresh key is granted by the new one (the client
// retries on its own), and until a new leader is elected; then it
// restarts the killed member.
func failover(s *system) (grant, elected time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.healthy(ctx); err != nil {
		return 0, 0, err
	}
	// Warm the worker up first, so the measurement is the election, not
	// connection setup.
	cycle, done, err := s.newWorker(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer done()
	if _, err := cycle(ctx, "failover-warmup"); err != nil {
		return 0, 0, err
	}
	killed := time.Now()
	restart, err := s.killLeader()
	if err != nil {
		return 0, 0, err
	}
	electedc := make(chan time.Duration, 1)
	go func() {
		if poll(ctx, "new leader", s.hasLeader) == nil {
			electedc <- time.Since(killed)
		}
		close(electedc)
	}()
	var took time.Duration
	for i := 0; ; i++ {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cycle(cctx, fmt.Sprintf("failover-%d-%d", killed.UnixNano(), i))
		ccancel()
		if err == nil {
			took = time.Since(killed)
			break
		}
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("no grant within 60s: %w", err)
		}
	}
	elected, ok := <-electedc
	if !ok {
		return 0, 0, errors.New("no new leader seen")
	}
	if err := restart(); err != nil {
		return 0, 0, fmt.Errorf("restart the killed member: %w", err)
	}
	return took, elected, nil
}

// poll calls ok every 5 ms until it is true or ctx ends.
func poll(ctx context.Context, what string, ok func() bool) error {
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startOurs starts three payonce coordinator nodes wired as cmd/coordinator
// wires them (timing: its default Raft timing unless -raft-timeout says).
// mode "" drives it through pkg/lock; "raft" and "http" measure one layer
// alone (see below).
func startOurs(dir, store string, timing time.Duration, mode string) (*system, error) {
	var peers []raftnode.Peer
	var httpAddrs []string
	for i := range 3 {
		ra, err := freeAddr()
		if err != nil {
			return nil, err
		}
		ha, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peers = append(peers, raftnode.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: ra})
		httpAddrs = append(httpAddrs, ha)
	}
	httpPeers := map[string]string{}
	var urls []string
	for i, p := range peers {
		httpPeers[p.ID] = "http://" + httpAddrs[i]
		urls = append(urls, "http://"+httpAddrs[i])
	}
	nodes := make([]*raftnode.Node, 3)
	servers := make([]*http.Server, 3)
	var mu sync.Mutex
	start := func(i int) error {
		n, err := raftnode.Open(raftnode.Config{ID: peers[i].ID, Bind: peers[i].Addr, DataDir: filepath.Join(dir, peers[i].ID), LogStore: store, Peers: peers, Bootstrap: true, LogOutput: io.Discard,
			HeartbeatTimeout: timing, ElectionTimeout: timing, LeaderLeaseTimeout: timing / 2})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", httpAddrs[i])
		if err != nil {
			n.Close()
			return err
		}
		srv := &http.Server{Handler: coordhttp.NewAPI(coordhttp.APIConfig{Service: raftnode.NewService(n), Cluster: n, Peers: httpPeers, Logger: slog.New(slog.DiscardHandler)}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		mu.Lock()
		nodes[i], servers[i] = n, srv
		mu.Unlock()
		return nil
	}
	for i := range 3 {
		if err := start(i); err != nil {
			return nil, err
		}
	}
	leader := func() int {
		mu.Lock()
		defer mu.Unlock()
		for i, n := range nodes {
			if n != nil && n.IsLeader() {
				return i
			}
		}
		return -1
	}
	for deadline := time.Now().Add(20 * time.Second); leader() < 0; {
		if time.Now().After(deadline) {
			return nil, errors.New("no leader")
		}
		time.Sleep(20 * time.Millisecond) // polling a bounded wait
	}
	client := lock.NewClient(urls)
	s := &system{name: "payonce"}
	s.newWorker = func(context.Context) (func(context.Context, string) (time.Duration, error), func(), error) {
		return func(ctx context.Context, key string) (time.Duration, error) {
			t0 := time.Now()
			l, err := client.Acquire(ctx, key, ttl, lock.Wait(time.Minute))
			if err != nil {
				return 0, err
			}
			lat := time.Since(t0)
			return lat, l.Release(ctx)
		}, func() {}, nil
	}
	if mode == "http" {
		// The same HTTP stack without Raft: two stale reads of a lock per
		// cycle, answered from the node's memory (404, lock not found).
		// It shows what the API layer alone allows.
		s.name = "payonce-http"
		hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}}
		s.newWorker = func(context.Context) (func(context.Context, string) (time.Duration, error), func(), error) {
			get := func(ctx context.Context, key string) error {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, urls[0]+"/v1/locks/"+key+"?stale=true", nil)
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					return fmt.Errorf("stale read: %s", resp.Status)
				}
				return nil
			}
			return func(ctx context.Context, key string) (time.Duration, error) {
				t0 := time.Now()
				if err := get(ctx, key); err != nil {
					return 0, err
				}
				lat := time.Since(t0)
				return lat, get(ctx, key)
			}, func() {}, nil
		}
	}
	if mode == "raft" {
		// The same cluster without HTTP and without the client: calls
		// into the leader's service in this process. It shows what the
		// Raft log itself allows; not a way to use payonce.
		s.name = "payonce-raft"
		s.newWorker = func(context.Context) (func(context.Context, string) (time.Duration, error), func(), error) {
			i := leader()
			if i < 0 {
				return nil, nil, errors.New("no leader")
			}
			mu.Lock()
			svc := raftnode.NewService(nodes[i])
			mu.Unlock()
			n := 0
			return func(ctx context.Context, key string) (time.Duration, error) {
				n++
				t0 := time.Now()
				l, err := svc.Acquire(ctx, coordinator.AcquireRequest{Lock: key, Owner: "bench", RequestID: fmt.Sprintf("%s-%d-%d", key, t0.UnixNano(), n), TTL: ttl, Wait: time.Minute})
				if err != nil {
					return 0, err
				}
				lat := time.Since(t0)
				return lat, svc.Release(ctx, key, l.ID)
			}, func() {}, nil
		}
	}
	s.killLeader = func() (func() error, error) {
		i := leader()
		if i < 0 {
			return nil, errors.New("no leader to kill")
		}
		mu.Lock()
		n, srv := nodes[i], servers[i]
		nodes[i], servers[i] = nil, nil
		mu.Unlock()
		_ = srv.Close()
		if err := n.Close(); err != nil {
			return nil, err
		}
		return func() error { return start(i) }, nil
	}
	s.hasLeader = func() bool { return leader() >= 0 }
	s.healthy = func(ctx context.Context) error {
		return poll(ctx, "payonce cluster healthy", func() bool {
			mu.Lock()
			defer mu.Unlock()
			l := -1
			for i, n := range nodes {
				if n == nil {
					return false
				}
				if n.IsLeader() {
					l = i
				}
			}
			if l < 0 {
				return false
			}
			want, _ := nodes[l].Leader()
			for _, n := range nodes {
				if id, _ := n.Leader(); id != want || n.AppliedIndex()+64 < nodes[l].AppliedIndex() {
					return false
				}
			}
			return true
		})
	}
	s.close = func() {
		for i := range nodes {
			if nodes[i] != nil {
				_ = servers[i].Close()
				_ = nodes[i].Close()
			}
		}
	}
	return s, nil
}

// startEtcd starts three embedded etcd members with etcd's default timing
// (100 ms heartbeat, 1 s election).
func startEtcd(dir string) (*system, error) {
	names := []string{"e1", "e2", "e3"}
	peerURLs, clientURLs := make([]url.URL, 3), make([]url.URL, 3)
	initial := ""
	for i, name := range names {
		pa, err := freeAddr()
		if err != nil {
			return nil, err
		}
		ca, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peerURLs[i] = url.URL{Scheme: "http", Host: pa}
		clientURLs[i] = url.URL{Scheme: "http", Host: ca}
		if initial != "" {
			initial += ","
		}
		initial += name + "=" + peerURLs[i].String()
	}
	members := make([]*embed.Etcd, 3)
	var mu sync.Mutex
	// start starts member i; on a data dir that holds a member already, it
	// restarts that member and the initial-cluster settings are ignored.
	start := func(i int) error {
		cfg := embed.NewConfig()
		cfg.Name = names[i]
		cfg.Dir = filepath.Join(dir, names[i])
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURLs[i]}, []url.URL{peerURLs[i]}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURLs[i]}, []url.URL{clientURLs[i]}
		cfg.InitialCluster = initial
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.LogLevel = "panic" // a killed member logs its closed listeners as errors
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return err
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(60 * time.Second):
			e.Close()
			return errors.New("etcd member not ready")
		}
		mu.Lock()
		members[i] = e
		mu.Unlock()
		return nil
	}
	errc := make(chan error, 3)
	for i := range names {
		go func() { errc <- start(i) }()
	}
	for range names {
		if err := <-errc; err != nil {
			return nil, err
		}
	}
	var eps []string
	for _, u := range clientURLs {
		eps = append(eps, u.String())
	}
	newClient := func() (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	}
	client, err := newClient()
	if err != nil {
		return nil, err
	}
	s := &system{name: "etcd"}
	// Each worker holds one session (a lease kept alive in the background)
	// and takes the Mutex under it, which is how concurrency.Mutex is meant
	// to be used; payonce's client makes a lease per acquire instead.
	s.newWorker = func(ctx context.Context) (func(context.Context, string) (time.Duration, error), func(), error) {
		sess, err := concurrency.NewSession(client, concurrency.WithTTL(int(ttl.Seconds())))
		if err != nil {
			return nil, nil, err
		}
		return func(ctx context.Context, key string) (time.Duration, error) {
				m := concurrency.NewMutex(sess, "/locks/"+key)
				t0 := time.Now()
				if err := m.Lock(ctx); err != nil {
					return 0, err
				}
				lat := time.Since(t0)
				return lat, m.Unlock(ctx)
			}, func() {
				_ = sess.Close()
			}, nil
	}
	s.killLeader = func() (func() error, error) {
		mu.Lock()
		defer mu.Unlock()
		for i, e := range members {
			if e != nil && e.Server.Leader() == e.Server.MemberID() {
				members[i] = nil
				e.Close()
				return func() error { return start(i) }, nil
			}
		}
		return nil, errors.New("no etcd leader to kill")
	}
	s.hasLeader = func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range members {
			if e != nil && e.Server.Leader() == e.Server.MemberID() {
				return true
			}
		}
		return false
	}
	s.healthy = func(ctx context.Context) error {
		defer func() {
			// A fresh client per failover: gRPC's back-off towards the
			// member killed last time must not count against etcd.
			if c, err := newClient(); err == nil {
				old := client
				client = c
				_ = old.Close()
			}
		}()
		return poll(ctx, "etcd cluster healthy", func() bool {
			mu.Lock()
			defer mu.Unlock()
			var lead uint64
			var applied []uint64
			for _, e := range members {
				if e == nil {
					return false
				}
				l := uint64(e.Server.Leader())
				if l == 0 || (lead != 0 && l != lead) {
					return false
				}
				lead = l
				applied = append(applied, e.Server.AppliedIndex())
			}
			return slices.Max(applied) <= slices.Min(applied)+64
		})
	}
	s.close = func() {
		_ = client.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range members {
			if e != nil {
				e.Close()
			}
		}
	}
	return s, nil
}
