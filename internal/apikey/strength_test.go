package apikey

import (
	"strings"
	"testing"
)

func TestCheckStrong(t *testing.T) {
	strong := "3f9a1c7e5b2d48a0c6e19f7b3d5a2c8e"
	if err := CheckStrong("shop:" + strong + ",peer:0123456789abcdef0123456789abcdef"); err != nil {
		t.Fatalf("strong keys refused: %v", err)
	}
	for name, spec := range map[string]string{
		"demo key":      "demo:payonce-demo-key-1",
		"short":         "shop:0123456789abcdef",
		"repetitive":    "shop:abababababababababababababababab",
		"long but demo": "shop:this-is-the-demo-key-of-the-readme-0123",
	} {
		err := CheckStrong("ok:" + strong + "," + spec)
		if err == nil {
			t.Errorf("%s accepted", name)
			continue
		}
		if _, key, _ := strings.Cut(spec, ":"); strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
	if err := CheckSecret("INTERNAL_SECRET", DevInternalSecret); err == nil {
		t.Error("the default internal secret accepted outside dev mode")
	}
	if err := CheckSecret("INTERNAL_SECRET", strong); err != nil {
		t.Errorf("strong secret refused: %v", err)
	}
}
