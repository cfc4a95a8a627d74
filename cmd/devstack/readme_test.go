package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A documented curl command: the command as written, and what the lines of
// comments right below it say it answers.
//
//	curl -si http://127.0.0.1:8080/v1/orders/... \
//	  -H 'Authorization: Bearer payonce-demo-key-1'
//	# HTTP/1.1 200 OK                        <- the status (required)
//	# Idempotent-Replayed: true              <- a response header
//	# {..., "status":"paid"} (repeat until paid)  <- body members; "until": retried
type curlExample struct {
	file    string
	line    int
	command string
	status  []int // any of these; the first is the usual one
	headers map[string]string
	members []string // `"name":value` pieces the body must contain
	repeat  bool     // the doc says to repeat it until the answer comes
}

var (
	statusLine = regexp.MustCompile(`^# HTTP/1\.1 (\d{3})\b`)
	statusCode = regexp.MustCompile(`\b[1-5][0-9][0-9]\b`)
	headerLine = regexp.MustCompile(`^# ([A-Z][A-Za-z-]+): (\S+)$`)
	jsonMember = regexp.MustCompile(`"[a-z_]+":("[^"]*"|-?[0-9]+|true|false)`)
)

// docFiles are the files whose curl commands must work: README.md and
// every page in docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(docs)
	return append([]string{filepath.Join(root, "README.md")}, docs...)
}

// curlExamples extracts every curl command from the ```sh blocks of a
// Markdown file. A line that uses curl other than as its command (in a
// pipeline, inside $(...)) is an error, so no curl command escapes the test.
func curlExamples(t *testing.T, path string) []curlExample {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var out []curlExample
	inSh := false
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inSh = !inSh && trimmed == "```sh"
			continue
		}
		if !inSh || !strings.Contains(line, "curl") || strings.HasPrefix(trimmed, "#") {
			continue
		}
		ex := curlExample{file: filepath.Base(path), line: i + 1, headers: map[string]string{}}
		if !strings.HasPrefix(trimmed, "curl ") {
			t.Errorf("%s:%d: curl must start the command so this test can run it: %q", ex.file, ex.line, trimmed)
			continue
		}
		// Join the continuation lines.
		cmd := strings.TrimSuffix(trimmed, "\\")
		for strings.HasSuffix(strings.TrimSpace(lines[i]), "\\") && i+1 < len(lines) {
			i++
			cmd += " " + strings.TrimSuffix(strings.TrimSpace(lines[i]), "\\")
		}
		ex.command = cmd
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "# ") {
			i++
			comment := lines[i]
			switch {
			case statusLine.MatchString(comment):
				// "# HTTP/1.1 503 Service Unavailable (or 201 Created)"
				for _, code := range statusCode.FindAllString(comment[len("# HTTP/1.1"):], -1) {
					n, _ := strconv.Atoi(code)
					ex.status = append(ex.status, n)
				}
			case headerLine.MatchString(comment):
				m := headerLine.FindStringSubmatch(comment)
				ex.headers[m[1]] = m[2]
			default:
				ex.members = append(ex.members, jsonMember.FindAllString(comment, -1)...)
			}
			ex.repeat = ex.repeat || strings.Contains(comment, "until")
		}
		if len(ex.status) == 0 {
			t.Errorf("%s:%d: no `# HTTP/1.1 <status>` line documents what this curl command answers", ex.file, ex.line)
			continue
		}
		out = append(out, ex)
	}
	return out
}

// TestReadmeCurlCommands runs every curl command of README.md and docs/*.md
// against a dev stack, in the order a reader meets them, and checks that
// curl exits 0 and the answer is the documented status, headers and body
// members. The stack runs on free ports; the documented ports are replaced
// by them, and the certificates dir .cache/devstack/pki by the test's;
// nothing else in a command is changed.
func TestReadmeCurlCommands(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed; the README's examples need it (Debian: apt-get install curl)")
	}
	files := docFiles(t)
	examples := map[string][]curlExample{}
	total := 0
	for _, f := range files {
		examples[f] = curlExamples(t, f)
		total += len(examples[f])
	}
	if len(examples[files[0]]) < 8 {
		t.Fatalf("README.md has %d curl examples; expected at least the 8 of its walkthrough", len(examples[files[0]]))
	}
	if t.Failed() {
		return
	}

	s := startStack(t)
	replacer := portReplacer(t, s)
	bankURL := s.urls["bank"]
	_, defaultFaults := httpJSON(t, "GET", bankURL+"/admin/faults", "", "")

	ran := 0
	for _, f := range files {
		// Each page starts from a bank without faults, whatever the page
		// before it left switched on.
		if status, body := httpJSON(t, "PUT", bankURL+"/admin/faults", "", string(defaultFaults)); status != http.StatusOK {
			t.Fatalf("reset bank faults: %d %s", status, body)
		}
		for _, ex := range examples[f] {
			runExample(t, ex, replacer.Replace(ex.command))
			ran++
		}
	}
	if ran != total {
		t.Fatalf("ran %d of %d curl examples", ran, total)
	}
	t.Logf("ran %d curl commands from %d files", ran, len(files))
}

// portReplacer maps each documented port to the one the test's stack uses.
func portReplacer(t *testing.T, s *runningStack) *strings.Replacer {
	t.Helper()
	documented := map[string]string{
		"orders-1": "8080", "orders-2": "8081", "payments-1": "8090", "payments-2": "8091", "bank": "8099",
		"coordinator-c1": "8101", "coordinator-c2": "8102", "coordinator-c3": "8103",
	}
	var pairs []string
	for name, port := range documented {
		u, err := url.Parse(s.urls[name])
		if err != nil || u.Port() == "" {
			t.Fatalf("no URL for %s in %v", name, s.urls)
		}
		pairs = append(pairs, "127.0.0.1:"+port, u.Host)
	}
	// The certificates make dev writes to .cache/devstack/pki, in the
	// test's own state dir.
	if s.pkiDir == "" {
		t.Fatal("the dev stack printed no certificates dir")
	}
	pairs = append(pairs, ".cache/devstack/pki/", s.pkiDir+"/")
	return strings.NewReplacer(pairs...)
}

func runExample(t *testing.T, ex curlExample, command string) {
	t.Helper()
	where := fmt.Sprintf("%s:%d", ex.file, ex.line)
	attempts := 1
	if ex.repeat {
		attempts = 300 // at 200ms apart: a minute
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var problem string
	for range attempts {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "sh", "-c", command).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: curl failed (%v):\n%s\n%s", where, err, command, out)
		}
		problem = checkAnswer(ex, string(out))
		if problem == "" {
			return
		}
		if ex.repeat {
			<-tick.C
		}
	}
	t.Errorf("%s: %s\ncommand: %s", where, problem, command)
}

// checkAnswer compares curl -i output with the documented answer and says
// what differs ("" when nothing does).
func checkAnswer(ex curlExample, out string) string {
	head, body, _ := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
	lines := strings.Split(head, "\n")
	fields := strings.Fields(lines[0])
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return fmt.Sprintf("no HTTP status line (use curl -i); got:\n%s", out)
	}
	if got, _ := strconv.Atoi(fields[1]); !slices.Contains(ex.status, got) {
		return fmt.Sprintf("status %s, documented %v; answer:\n%s", fields[1], ex.status, out)
	}
	header := http.Header{}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	for k, want := range ex.headers {
		if got := header.Get(k); got != want {
			return fmt.Sprintf("header %s is %q, documented %q; answer:\n%s", k, got, want, out)
		}
	}
	for _, m := range ex.members {
		if !strings.Contains(body, m) {
			return fmt.Sprintf("body lacks the documented %s; answer:\n%s", m, out)
		}
	}
	return ""
}

// TestCurlExamplesParse checks the extraction on a small page, so a change
// in the parser cannot silently skip commands.
func TestCurlExamplesParse(t *testing.T) {
	page := "text\n```sh\ncurl -si http://127.0.0.1:8080/x \\\n  -H 'A: b'\n# HTTP/1.1 201 Created\n# Idempotent-Replayed: true\n" +
		"# {\"status\":\"paid\", \"total\":6100} (repeat until paid)\nmake dev\n```\n```text\ncurl not run\n```\n"
	path := filepath.Join(t.TempDir(), "page.md")
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	got := curlExamples(t, path)
	if len(got) != 1 {
		t.Fatalf("got %d examples, want 1: %+v", len(got), got)
	}
	ex := got[0]
	if ex.command != "curl -si http://127.0.0.1:8080/x  -H 'A: b'" || !slices.Equal(ex.status, []int{201}) || !ex.repeat ||
		ex.headers["Idempotent-Replayed"] != "true" || strings.Join(ex.members, " ") != `"status":"paid" "total":6100` {
		t.Fatalf("parsed %+v", ex)
	}
	if p := checkAnswer(ex, "HTTP/1.1 201 Created\r\nIdempotent-Replayed: true\r\n\r\n{\"status\":\"paid\",\"total\":6100}"); p != "" {
		t.Errorf("matching answer refused: %s", p)
	}
	if p := checkAnswer(ex, "HTTP/1.1 201 Created\r\n\r\n{\"status\":\"paid\",\"total\":6100}"); p == "" {
		t.Error("answer without the documented header accepted")
	}
	if p := checkAnswer(ex, "HTTP/1.1 200 OK\r\nIdempotent-Replayed: true\r\n\r\n{\"status\":\"paid\",\"total\":6100}"); p == "" {
		t.Error("answer with another status accepted")
	}
}
