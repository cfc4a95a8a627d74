package remote

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The membership lists where peers reach an instance (its mutual-TLS
// internal listener); the console calls the instances it is told about at
// their public URLs instead, and falls back to the member address for the
// others.
func TestMembershipUsesTheInstancesPublicURLs(t *testing.T) {
	coord := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"version":3,"members":[{"instance":"orders-1","addr":"https://10.0.0.5:8443"},{"instance":"orders-9","addr":"https://10.0.0.9:8443"}]}`))
	}))
	defer coord.Close()
	s := NewStack(Config{CoordinatorURLs: []string{coord.URL}, InstanceURLs: map[string]string{"orders-1": "http://127.0.0.1:8080/"}})
	m, err := s.Membership(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, in := range m.Instances {
		got[in.Name] = in.Addr
	}
	if got["orders-1"] != "http://127.0.0.1:8080" || got["orders-9"] != "https://10.0.0.9:8443" {
		t.Fatalf("instances: %v", got)
	}
}
