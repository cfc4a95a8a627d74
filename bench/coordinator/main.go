// Command coordinator compares payonce's lock coordinator with etcd in one
// run, on one machine: two 3-node clusters on loopback, both fsyncing their
// logs, each driven through its ordinary client (pkg/lock over HTTP;
// clientv3 with concurrency.Mutex over gRPC). It prints acquire+release
// cycles per second and acquire latency at 1/4/16/64 clients, uncontended
// (a lock per client) and contended (one lock for all), then how long each
// cluster takes to grant locks again after its leader is killed.
//
// Run from this directory: go run . [-d 3s] [-store wal|bolt]
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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/payonce/payonce/pkg/lock"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

const ttl = 10 * time.Second

func main() {
	dur := flag.Duration("d", 3*time.Second, "duration of each measurement")
	store := flag.String("store", raftnode.DefaultLogStore, "payonce's log store: wal or bolt")
	flag.Parse()
	if err := run(*dur, *store); err != nil {
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
	// killLeader stops the leader abruptly and returns when it is gone.
	killLeader func() error
	close      func()
}

func run(dur time.Duration, store string) error {
	base, err := os.MkdirTemp("", "coordbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	ours, err := startOurs(filepath.Join(base, "payonce"), store)
	if err != nil {
		return fmt.Errorf("payonce cluster: %w", err)
	}
	defer ours.close()
	etcd, err := startEtcd(filepath.Join(base, "etcd"))
	if err != nil {
		return fmt.Errorf("etcd cluster: %w", err)
	}
	defer etcd.close()

	fmt.Printf("%s %s/%s, GOMAXPROCS=%d, %v per cell, TTL %v, fsync on in both\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), dur, ttl)
	fmt.Println("| system | load | clients | cycles/s | acquire p50 ms | acquire p99 ms |")
	fmt.Println("|---|---|---:|---:|---:|---:|")
	for _, contended := range []bool{false, true} {
		for _, clients := range []int{1, 4, 16, 64} {
			// Alternate the order so neither system always runs second
			// on a machine whose load drifts.
			pair := []*system{ours, etcd}
			if clients%2 == 0 == contended {
				pair = []*system{etcd, ours}
			}
			for _, s := range pair {
				r, err := measure(s, clients, contended, dur)
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
	fmt.Println()
	for _, s := range []*system{ours, etcd} {
		d, err := failover(s)
		if err != nil {
			return fmt.Errorf("%s failover: %w", s.name, err)
		}
		fmt.Printf("%s: locks granted again %v after the leader was killed\n", s.name, d.Round(time.Millisecond))
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

// failover kills the leader and measures until a lock on a fresh key is
// granted by the new one (the client retries on its own).
func failover(s *system) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Warm the worker up first, so the measurement is the election, not
	// connection setup.
	cycle, done, err := s.newWorker(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if _, err := cycle(ctx, "failover-warmup"); err != nil {
		return 0, err
	}
	killed := time.Now()
	if err := s.killLeader(); err != nil {
		return 0, err
	}
	for i := 0; ; i++ {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cycle(cctx, fmt.Sprintf("failover-%d", i))
		ccancel()
		if err == nil {
			return time.Since(killed), nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no grant within 30s: %w", err)
		}
	}
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
// wires them, with its default Raft timing.
func startOurs(dir, store string) (*system, error) {
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
	for i := range 3 {
		n, err := raftnode.Open(raftnode.Config{ID: peers[i].ID, Bind: peers[i].Addr, DataDir: filepath.Join(dir, peers[i].ID), LogStore: store, Peers: peers, LogOutput: io.Discard})
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", httpAddrs[i])
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: coordhttp.NewAPI(coordhttp.APIConfig{Service: raftnode.NewService(n), Cluster: n, Peers: httpPeers, Logger: slog.New(slog.DiscardHandler)}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		nodes[i], servers[i] = n, srv
	}
	var mu sync.Mutex
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
	s.killLeader = func() error {
		i := leader()
		if i < 0 {
			return errors.New("no leader to kill")
		}
		mu.Lock()
		n, srv := nodes[i], servers[i]
		nodes[i], servers[i] = nil, nil
		mu.Unlock()
		_ = srv.Close()
		return n.Close()
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
	errc := make(chan error, 3)
	for i, name := range names {
		go func() {
			cfg := embed.NewConfig()
			cfg.Name = name
			cfg.Dir = filepath.Join(dir, name)
			cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURLs[i]}, []url.URL{peerURLs[i]}
			cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURLs[i]}, []url.URL{clientURLs[i]}
			cfg.InitialCluster = initial
			cfg.ClusterState = embed.ClusterStateFlagNew
			cfg.LogLevel = "error"
			e, err := embed.StartEtcd(cfg)
			if err != nil {
				errc <- err
				return
			}
			members[i] = e
			select {
			case <-e.Server.ReadyNotify():
				errc <- nil
			case <-time.After(60 * time.Second):
				errc <- errors.New("etcd member not ready")
			}
		}()
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
	client, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
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
	var mu sync.Mutex
	s.killLeader = func() error {
		mu.Lock()
		defer mu.Unlock()
		for i, e := range members {
			if e != nil && e.Server.Leader() == e.Server.MemberID() {
				members[i] = nil
				e.Close()
				return nil
			}
		}
		return errors.New("no etcd leader to kill")
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
