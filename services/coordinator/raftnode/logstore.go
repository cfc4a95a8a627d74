package raftnode

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

// The log stores a node can keep its Raft log and stable state in.
const (
	// LogStoreBolt is raft-boltdb/v2: one bbolt file, raft.db, in DataDir.
	// A commit costs two fdatasyncs (pages, then the meta page).
	LogStoreBolt = "bolt"
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files plus a
	// small bbolt file for metadata, in DataDir/wal. An append costs one
	// fsync of the tail segment.
	LogStoreWAL = "wal"
)

// DefaultLogStore is the log store a new data dir gets when Config.LogStore
// is empty. A commit waits for the leader's append and then a follower's,
// in series, so one fsync per append instead of two nearly halves it
// (figures in docs/coordinator.md).
const DefaultLogStore = LogStoreWAL

// durableStore is a log store that is also the stable store (term, vote),
// as both implementations are.
type durableStore interface {
	raft.LogStore
	raft.StableStore
	io.Closer
}

// openLogStore opens the log and stable store named by cfg.LogStore in
// cfg.DataDir; empty means the store the data dir already holds, else
// DefaultLogStore, so a node created before the default changed keeps its
// log. It refuses a data dir that holds the other store: the new one would
// start without the term and vote this node has promised, and a node that
// forgets its vote can vote twice in one term.
func openLogStore(cfg Config, logger hclog.Logger) (durableStore, error) {
	boltPath := filepath.Join(cfg.DataDir, "raft.db")
	walDir := filepath.Join(cfg.DataDir, "wal")
	store := cfg.LogStore
	if store == "" {
		store = DefaultLogStore
		if exists(boltPath) {
			store = LogStoreBolt
		}
	}
	switch store {
	case LogStoreBolt:
		if exists(walDir) {
			return nil, fmt.Errorf("log store %q: %s holds a %q store; moving a node between stores needs a migration", LogStoreBolt, cfg.DataDir, LogStoreWAL)
		}
		// The freelist is not written at every commit (etcd's default
		// too): a commit then writes fewer pages, and bbolt rebuilds the
		// freelist by scanning when it opens the file. The log entries and
		// the meta page are still fsynced before StoreLogs returns, so
		// durability is the same.
		opts := *bbolt.DefaultOptions
		opts.NoFreelistSync = true
		opts.FreelistType = bbolt.FreelistMapType
		return raftboltdb.New(raftboltdb.Options{Path: boltPath, NoSync: cfg.NoSync, BoltOptions: &opts})
	case LogStoreWAL:
		if cfg.NoSync {
			return nil, errors.New("log store \"wal\" always fsyncs; NoSync needs the bolt store")
		}
		if exists(boltPath) {
			return nil, fmt.Errorf("log store %q: %s holds a %q store; moving a node between stores needs a migration", LogStoreWAL, cfg.DataDir, LogStoreBolt)
		}
		if err := os.MkdirAll(walDir, 0o755); err != nil {
			return nil, err
		}
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(walDir, wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta))
		if err != nil {
			return nil, errors.Join(err, meta.Close())
		}
		return walStore{WAL: w, meta: meta}, nil
	default:
		return nil, fmt.Errorf("unknown log store %q (want %q or %q)", cfg.LogStore, LogStoreBolt, LogStoreWAL)
	}
}

// walStore closes the WAL's metadata database too: (*wal.WAL).Close in
// v0.4.0 leaves it open, and since bbolt holds an flock on its file and
// waits for it without a timeout, reopening the WAL in the same process (a
// restarted node, in tests) would block forever.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// Close closes the WAL, then its metadata database.
func (s walStore) Close() error { return errors.Join(s.WAL.Close(), s.meta.Close()) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
