package localpg

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinariesOnAMachineWithoutPostgres(t *testing.T) {
	none := binarySearch{
		lookPath: func(string) (string, error) { return "", errors.New("not in PATH") },
		pgConfig: func() ([]byte, error) { return nil, errors.New("pg_config not found") },
		pattern:  filepath.Join(t.TempDir(), "*", "bin"),
	}
	_, err := none.find()
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	// The message is the whole instruction a person gets: it must say what
	// to install and the alternative.
	for _, want := range []string{"apt-get install postgresql", "PAYONCE_TEST_DATABASE_URL", "initdb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not mention %q", err, want)
		}
	}
}

func TestFindBinariesPrefersNewestMajorVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9", "15", "14"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "initdb"), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := binarySearch{
		lookPath: func(string) (string, error) { return "", errors.New("not in PATH") },
		pgConfig: func() ([]byte, error) { return nil, errors.New("pg_config not found") },
		pattern:  filepath.Join(root, "*", "bin"),
	}
	got, err := s.find()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "15", "bin"); got != want {
		t.Fatalf("found %s, want %s", got, want)
	}
}
