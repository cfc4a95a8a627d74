package localnats_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/localnats"
)

// natsServerBinary returns the nats-server that `make test` built, or
// builds one from go.mod's version.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(localnats.BinaryEnv); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return bin
}

// roundTrip shows JetStream working: a stream with a de-duplication
// window takes a message once, whatever the retries.
func roundTrip(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "probe", Subjects: []string{"probe.>"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "probe.one", []byte("x"), jetstream.WithMsgID("m-1")); err != nil {
			t.Fatal(err)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("%d messages stored, want 1 (de-duplicated)", info.State.Msgs)
	}
}

func TestEmbedded(t *testing.T) {
	t.Setenv(localnats.BinaryEnv, "")
	s, err := localnats.Start(localnats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	roundTrip(t, s.URL())
}

func TestChildProcess(t *testing.T) {
	store := filepath.Join(t.TempDir(), "not-yet-made")
	s, err := localnats.Start(localnats.Options{StoreDir: store, Binary: natsServerBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, s.URL())
	s.Shutdown()
	if _, err := nats.Connect(s.URL(), nats.Timeout(time.Second)); err == nil {
		t.Fatal("the server still accepts connections after Shutdown")
	}
	// The JetStream files went where they were asked to go.
	if _, err := os.Stat(filepath.Join(store, "jetstream")); err != nil {
		t.Fatalf("no JetStream store in the given directory: %v", err)
	}
}

func TestMissingBinaryIsAClearError(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "no-such-nats-server")
	_, err := localnats.Start(localnats.Options{Binary: bin})
	if err == nil || !strings.Contains(err.Error(), bin) {
		t.Fatalf("err = %v, want one naming %s", err, bin)
	}
}
