//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConsoleSeesTheDocumentedComposeCommands runs the commands that
// docs/console.md gives for breaking the compose stack by hand (the console
// has no control endpoint there), read from the document itself, and
// checks that the console sees each outage and the stack's recovery: the
// Raft leader killed, a new leader, the old one back; the orders database
// made to refuse connections, the console showing the customer's order as
// last read while orders answers 503, then the order fresh again and new
// orders accepted.
func TestConsoleSeesTheDocumentedComposeCommands(t *testing.T) {
	stack(t)
	commands := documentedComposeCommands(t)

	// Kill the leader: the document names coordinator-1 and says the
	// leader may be another; the test kills the one that leads.
	v := waitConsoleView(t, "a leader and three coordinators", func(v consoleView) bool { return v.LeaderID != "" && v.up() == 3 })
	old := v.LeaderID
	leader := "coordinator-" + strings.TrimPrefix(old, "c")
	runDocumented(t, withService(findCommand(t, commands, "kill", "coordinator-1"), "coordinator-1", leader))
	waitConsoleView(t, "a new leader, and the old one not answering", func(v consoleView) bool {
		return v.LeaderID != "" && v.LeaderID != old && v.up() == 2
	})
	runDocumented(t, withService(findCommand(t, commands, "start", "coordinator-1"), "coordinator-1", leader))
	waitConsoleView(t, "three coordinators again", func(v consoleView) bool { return v.LeaderID != "" && v.up() == 3 })
	waitHealthy(t, leader)

	// The orders database refuses connections: an order the console
	// watches stays on its page as last read, and new orders are refused.
	customer := "console-compose-" + randomHex(4)
	if r := call(t, "GET", consoleURL+"/api/ring/lookup?customer="+customer, "", "", nil, nil); r.status != 200 {
		t.Fatalf("console lookup (which watches the customer): %d %s", r.status, r.body)
	}
	id := createOrderRetrying(t, "console-compose-"+randomHex(6), customer, time.Minute)
	if id == "" {
		t.FailNow()
	}
	waitConsoleView(t, "the order paid on the console", func(v consoleView) bool {
		o, ok := v.order(id)
		return ok && o.Status == "paid" && !o.Stale
	})
	reopen := findCommand(t, commands, "ALTER DATABASE orders ALLOW_CONNECTIONS true")
	runDocumented(t, findCommand(t, commands, "ALTER DATABASE orders ALLOW_CONNECTIONS false"))
	reopened := false
	t.Cleanup(func() {
		if !reopened {
			runDocumented(t, reopen)
		}
	})
	waitConsoleView(t, "the order shown as last read while orders' database refuses connections", func(v consoleView) bool {
		o, ok := v.order(id)
		return ok && o.Stale
	})
	r, err := send("POST", orders1+"/v1/orders", demoAPIKey, "console-compose-refused-"+randomHex(6), orderBody(customer, 1), nil)
	if err != nil || r.status != 503 {
		t.Fatalf("an order while orders' database refuses connections: %d %.300s %v, want 503", r.status, r.body, err)
	}
	runDocumented(t, reopen)
	reopened = true
	waitConsoleView(t, "the order fresh again once orders' database is back", func(v consoleView) bool {
		o, ok := v.order(id)
		return ok && !o.Stale && o.Status == "paid"
	})
	if createOrderRetrying(t, "console-compose-after-"+randomHex(6), customer, 2*time.Minute) == "" {
		t.FailNow()
	}
}

// consoleView is the part of the console's view this test reads.
type consoleView struct {
	LeaderID     string `json:"leader_id"`
	Coordinators []struct {
		Up bool `json:"up"`
	} `json:"coordinators"`
	Orders   []consoleOrder `json:"orders"`
	Problems []string       `json:"problems"`
}

// consoleOrder is an order as the console shows it; Stale while orders
// does not answer (the order as last read).
type consoleOrder struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Stale  bool   `json:"stale"`
}

func (v consoleView) up() int {
	n := 0
	for _, c := range v.Coordinators {
		if c.Up {
			n++
		}
	}
	return n
}

func (v consoleView) order(id string) (consoleOrder, bool) {
	i := slices.IndexFunc(v.Orders, func(o consoleOrder) bool { return o.ID == id })
	if i < 0 {
		return consoleOrder{}, false
	}
	return v.Orders[i], true
}

// waitConsoleView polls the console's view until cond holds, bounded.
func waitConsoleView(t *testing.T, what string, cond func(consoleView) bool) consoleView {
	t.Helper()
	var v consoleView
	eventually(t, 3*time.Minute, what, func() (bool, string) {
		r, err := send("GET", consoleURL+"/api/view", "", "", nil, nil)
		if err != nil || r.status != 200 {
			return false, fmt.Sprintf("%d %v", r.status, err)
		}
		v = consoleView{}
		if err := json.Unmarshal(r.body, &v); err != nil {
			return false, err.Error()
		}
		return cond(v), fmt.Sprintf("leader %q, %d coordinators up, orders %+v, problems %v", v.LeaderID, v.up(), v.Orders, v.Problems)
	})
	return v
}

// documentedPrefix starts every compose command docs/console.md gives.
const documentedPrefix = "docker compose -f deploy/docker-compose.yml -p payonce "

// documentedComposeCommands reads the compose commands from
// docs/console.md, as a reader would copy them: continuation lines joined,
// trailing comments dropped, double quotes respected.
func documentedComposeCommands(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "console.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if strings.HasPrefix(line, documentedPrefix) {
			out = append(out, shellWords(line))
		}
	}
	if len(out) == 0 {
		t.Fatalf("docs/console.md gives no command starting %q", documentedPrefix)
	}
	return out
}

// shellWords splits a command line as sh would for the documented
// commands: words separated by blanks, "double quotes" kept together, and
// the rest of the line dropped at an unquoted #.
func shellWords(line string) []string {
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case !quoted && r == '#':
			if inWord {
				words = append(words, word.String())
			}
			return words
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}

// findCommand returns the documented command that has every one of words.
func findCommand(t *testing.T, commands [][]string, words ...string) []string {
	t.Helper()
	for _, c := range commands {
		if !slices.ContainsFunc(words, func(w string) bool { return !slices.Contains(c, w) }) {
			return c
		}
	}
	t.Fatalf("docs/console.md gives no compose command with %q", words)
	return nil
}

func withService(command []string, from, to string) []string {
	out := slices.Clone(command)
	for i, w := range out {
		if w == from {
			out[i] = to
		}
	}
	return out
}

// runDocumented runs a documented command from the repository root with
// the compose CLI this machine has (the compose v2 plugin, as documented,
// else docker-compose 1.29, which takes the same arguments) and the
// stack's project name.
func runDocumented(t *testing.T, command []string) {
	t.Helper()
	args := slices.Clone(command[2:]) // after "docker compose"
	for i := range args {
		if i > 0 && args[i-1] == "-p" {
			args[i] = project()
		}
	}
	name, prefix := "docker", []string{"compose"}
	if exec.Command("docker", "compose", "version").Run() != nil {
		name, prefix = "docker-compose", nil
	}
	cmd := exec.Command(name, append(prefix, args...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(append(prefix, args...), " "), err, out)
	}
	t.Logf("ran %s %s", name, strings.Join(append(prefix, args...), " "))
}

// repoRoot is two levels up from this package (go test runs in it).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}
