package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/localpg"
)

// floorScript is one new payment's commits, as pgbench runs them (see the
// file's own comment for which commits and why).
//
//go:embed floor.sql
var floorScript string

// floorCommits is how many commits floorScript makes: one payment's, on
// the request path.
const floorCommits = 3

// prepareFloor writes the pgbench script into dir and gives the script's
// partitions their claimed fence rows in the bench's payments database.
func prepareFloor(ctx context.Context, dbURL, dir string) (string, error) {
	script := filepath.Join(dir, "floor.sql")
	if err := os.WriteFile(script, []byte(floorScript), 0o644); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `INSERT INTO fence_tokens (resource, epoch, token, lease_id)
		SELECT 'pgbench-partition-' || p, 1, 1, 'pgbench' FROM generate_series(0, 63) AS p
		ON CONFLICT (resource) DO NOTHING`)
	return script, err
}

// pgbenchFloor runs the floor script with pgbench against the bench's own
// PostgreSQL, at clients connections for d, and reads each transaction's
// latency from pgbench's per-transaction log.
func pgbenchFloor(ctx context.Context, dbURL, script, dir string, clients int, d time.Duration) (result, error) {
	pgbench, err := pgbenchBinary()
	if err != nil {
		return result{}, err
	}
	prefix := filepath.Join(dir, fmt.Sprintf("floor-%d", clients))
	threads := min(clients, 2) // the machine's cores, as the payments process gets them
	cmd := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared",
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(int(d.Seconds())),
		"-f", script, "-l", "--log-prefix", prefix, dbURL)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("pgbench printed no tps: %s", out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	logs, _ := filepath.Glob(prefix + ".*")
	var lat []time.Duration
	for _, name := range logs {
		f, err := os.Open(name)
		if err != nil {
			return result{}, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// client_id transaction_no time_us script_no epoch epoch_us
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err == nil {
				lat = append(lat, time.Duration(us)*time.Microsecond)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return result{}, err
		}
	}
	if len(lat) == 0 {
		return result{}, errors.New("pgbench logged no transaction")
	}
	slices.Sort(lat)
	return result{n: len(lat), rate: rate, p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}, nil
}

// pgbenchBinary finds pgbench beside the postgres the bench runs, or else
// on PATH.
func pgbenchBinary() (string, error) {
	if dir, err := localpg.FindBinaries(); err == nil {
		if p := filepath.Join(dir, "pgbench"); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("pgbench")
	if err != nil {
		return "", fmt.Errorf("pgbench not found beside postgres nor on PATH (Debian/Ubuntu: apt-get install postgresql-client): %w", err)
	}
	return p, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
