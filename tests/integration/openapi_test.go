package integration

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestOpenAPIMatchesTheHandlers checks docs/openapi.yaml against the code
// both ways: every route the services register (read from the mux patterns
// in their source) is in the spec under that service's tag, and every
// operation in the spec is routed by the running service (a request to it
// is not answered by the mux's own plain-text 404 or 405).
func TestOpenAPIMatchesTheHandlers(t *testing.T) {
	root := repoRoot(t)
	spec := readSpecOperations(t, filepath.Join(root, "docs", "openapi.yaml"))
	routes := registeredRoutes(t, root)

	for service, patterns := range routes {
		for _, p := range patterns {
			if !spec[service][p] {
				t.Errorf("%s registers %q, which docs/openapi.yaml does not document under tag %s", service, p, service)
			}
		}
	}
	for _, service := range []string{"orders", "payments", "bank", "coordinator"} {
		if len(routes[service]) < 4 {
			t.Fatalf("found only %v routes for %s in the source: the route reader is broken", routes[service], service)
		}
	}
	if t.Failed() {
		return
	}

	s := startFullStack(t, 1, 1)
	base := map[string]string{
		"orders": s.orders.urls[0], "payments": s.payments.urls[0], "bank": s.bank.apiURL, "coordinator": s.coord.urls[0],
	}
	routed := func(service, method, path string) (bool, string) {
		url := base[service] + pathParam.ReplaceAllString(path, "x1")
		if service == "bank" && (strings.HasPrefix(path, "/admin/") || path == "/metrics") {
			// The bank runs as deployed: its payment API over mutual TLS,
			// its controls and metrics on the admin listener.
			url = s.bank.url + path
		}
		r := call(method, url, testAPIKey, "", "{}")
		if r.Err != nil {
			t.Fatalf("%s %s: %v", method, url, r.Err)
		}
		ct := r.Header.Get("Content-Type")
		muxAnswer := (r.Status == http.StatusNotFound || r.Status == http.StatusMethodNotAllowed) &&
			!strings.HasPrefix(ct, "application/problem+json") && !strings.HasPrefix(ct, "application/json")
		return !muxAnswer, fmt.Sprintf("%d %s %q", r.Status, ct, r.Body)
	}
	// The check itself must be able to fail: an undocumented path is
	// answered by the mux.
	for service := range base {
		if ok, got := routed(service, "GET", "/v1/no-such-route"); ok {
			t.Fatalf("%s: GET /v1/no-such-route looked routed (%s); the check cannot tell routes from misses", service, got)
		}
	}
	for service, ops := range spec {
		for op := range ops {
			method, path, _ := strings.Cut(op, " ")
			if ok, got := routed(service, method, path); !ok {
				t.Errorf("docs/openapi.yaml documents %s %s on %s, but the service does not route it: %s", method, path, service, got)
			}
		}
	}
}

var pathParam = regexp.MustCompile(`\{[a-z_]+\}`)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// readSpecOperations reads the operations of docs/openapi.yaml by service
// tag: service -> "METHOD /path". The spec is written in a fixed layout
// (paths at two spaces, methods at four, tags at six), which this reader
// insists on rather than guessing.
func readSpecOperations(t *testing.T, path string) map[string]map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		pathLine   = regexp.MustCompile(`^  (/\S*):$`)
		methodLine = regexp.MustCompile(`^    (get|put|post|delete|patch):$`)
		tagsLine   = regexp.MustCompile(`^      tags: \[([a-z, ]+)\]$`)
	)
	ops := map[string]map[string]bool{}
	inPaths := false
	var curPath, curOp string
	untagged := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "paths:":
			inPaths = true
		case inPaths && line != "" && !strings.HasPrefix(line, " "):
			inPaths = false
		case !inPaths:
		case pathLine.MatchString(line):
			curPath = pathLine.FindStringSubmatch(line)[1]
		case methodLine.MatchString(line):
			curOp = strings.ToUpper(methodLine.FindStringSubmatch(line)[1]) + " " + curPath
			untagged[curOp] = true
		case tagsLine.MatchString(line):
			for _, tag := range strings.Split(tagsLine.FindStringSubmatch(line)[1], ",") {
				tag = strings.TrimSpace(tag)
				if ops[tag] == nil {
					ops[tag] = map[string]bool{}
				}
				ops[tag][curOp] = true
			}
			delete(untagged, curOp)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for op := range untagged {
		t.Errorf("docs/openapi.yaml: %s has no `tags: [service]` line naming the service that serves it", op)
	}
	if len(ops) == 0 {
		t.Fatal("docs/openapi.yaml: no operations read")
	}
	return ops
}

// registeredRoutes reads the "METHOD /path" patterns every service's
// transport registers on its mux (services/<name>/http), plus the probes
// internal/httpkit serves for every service.
func registeredRoutes(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	dirs, _ := filepath.Glob(filepath.Join(root, "services", "*", "http"))
	for _, dir := range dirs {
		service := filepath.Base(filepath.Dir(dir))
		if service == "console" {
			// The console is a page for people, not an API for clients: its
			// JSON routes serve its own JavaScript and are tested with it
			// (services/console/http, TestConsoleInABrowser).
			continue
		}
		out[service] = append(out[service], muxPatterns(t, dir, "")...)
	}
	probes := muxPatterns(t, filepath.Join(root, "internal", "httpkit"), "router.go")
	if len(probes) != 3 {
		t.Fatalf("expected the 3 probe routes in internal/httpkit/router.go, read %v", probes)
	}
	for service := range out {
		out[service] = append(out[service], probes...)
		sort.Strings(out[service])
	}
	return out
}

// muxPatterns finds calls of Handle, HandleFunc or handle whose first
// argument is a constant "METHOD /path" (a literal, a package constant, or
// a sum of them) in the non-test Go files of dir (only file, if given).
// Patterns without a method are mounts of another handler, not routes.
func muxPatterns(t *testing.T, dir, file string) []string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go") && (file == "" || fi.Name() == file)
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, pkg := range pkgs {
		consts := map[string]string{}
		for _, f := range pkg.Files {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								consts[name.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			}
		}
		var eval func(ast.Expr) (string, bool)
		eval = func(e ast.Expr) (string, bool) {
			switch e := e.(type) {
			case *ast.BasicLit:
				if e.Kind == token.STRING {
					s, err := strconv.Unquote(e.Value)
					return s, err == nil
				}
			case *ast.Ident:
				s, ok := consts[e.Name]
				return s, ok
			case *ast.BinaryExpr:
				if e.Op == token.ADD {
					l, ok1 := eval(e.X)
					r, ok2 := eval(e.Y)
					return l + r, ok1 && ok2
				}
			}
			return "", false
		}
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) < 2 {
					return true
				}
				var name string
				switch fn := call.Fun.(type) {
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				case *ast.Ident:
					name = fn.Name
				}
				if name != "Handle" && name != "HandleFunc" && name != "handle" {
					return true
				}
				pattern, ok := eval(call.Args[0])
				if id, isIdent := call.Args[0].(*ast.Ident); !ok && isIdent && consts[id.Name] == "" {
					// A helper passing its own parameter on (bank's
					// handle(pattern, ...)): its callers are read instead.
					return true
				}
				if !ok {
					t.Errorf("%s: a route pattern this test cannot read; keep patterns constant", fset.Position(call.Pos()))
					return true
				}
				if method, _, found := strings.Cut(pattern, " "); found && method == strings.ToUpper(method) {
					patterns = append(patterns, pattern)
				}
				return true
			})
		}
	}
	return patterns
}
