package main

import (
	"testing"
	"time"
)

// TestMembershipTTLIsCappedAtThePartitionTTL: under the partition design a
// dead instance's partitions move once its member entry has run out, so a
// member entry that outlived the partition leases would hold the takeover
// past the lease TTL (issue #14). The lock design keeps MEMBERSHIP_TTL as
// set: there it only decides routing.
func TestMembershipTTLIsCappedAtThePartitionTTL(t *testing.T) {
	for _, tc := range []struct {
		ownership, membershipTTL, partitionTTL string
		want                                   time.Duration
	}{
		{"partition", "4s", "1s", time.Second},
		{"partition", "1s", "6s", time.Second},
		{"partition", "", "", 3 * time.Second}, // the defaults: 3s under 6s
		{"lock", "4s", "1s", 4 * time.Second},
	} {
		env := map[string]string{
			"PAYONCE_DEV_MODE":       "true", // short test keys
			"PAYMENTS_API_KEYS":      "shop:k",
			"PAYMENTS_PEER_API_KEY":  "k",
			"PAYMENTS_DATABASE_URL":  "postgres://db/payments",
			"COORDINATOR_URLS":       "https://c1:7070",
			"PAYMENTS_OWNERSHIP":     tc.ownership,
			"MEMBERSHIP_TTL":         tc.membershipTTL,
			"PAYMENTS_PARTITION_TTL": tc.partitionTTL,
		}
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if cfg.MembershipTTL != tc.want {
			t.Errorf("%s design, MEMBERSHIP_TTL=%q, PAYMENTS_PARTITION_TTL=%q: membership TTL %v, want %v",
				tc.ownership, tc.membershipTTL, tc.partitionTTL, cfg.MembershipTTL, tc.want)
		}
	}
}
