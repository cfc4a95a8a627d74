package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestEveryProblemTypeIsDocumented reads every problem type the code can
// answer with (errs.Kind names, WithType("...") calls and Type* constants)
// and checks docs/problems.md has an anchor for it: a client that follows a
// problem's type URL always lands on its explanation.
func TestEveryProblemTypeIsDocumented(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "problems.md"))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	withType := regexp.MustCompile(`WithType\("([a-z-]+)"\)`)
	typeConst := regexp.MustCompile(`\bType[A-Za-z]*\s*=\s*"([a-z-]+)"`)
	kindName := regexp.MustCompile(`^\s*(?:Internal|Invalid|Unauthorized|Forbidden|NotFound|Conflict|TooLarge|Unprocessable|Unavailable|RateLimited):\s*"([a-z-]+)"`)
	for _, dir := range []string{"internal", "pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, re := range []*regexp.Regexp{withType, typeConst} {
				for _, m := range re.FindAllStringSubmatch(string(src), -1) {
					types[m[1]] = path
				}
			}
			for _, line := range strings.Split(string(src), "\n") {
				if m := kindName.FindStringSubmatch(line); m != nil {
					types[m[1]] = path
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(types) < 20 {
		t.Fatalf("found only %d problem types; the scan is broken: %v", len(types), types)
	}
	for typ, where := range types {
		if !strings.Contains(string(doc), `<a id="`+typ+`"></a>`) {
			t.Errorf("problem type %q (%s) has no anchor in docs/problems.md", typ, where)
		}
	}
}
