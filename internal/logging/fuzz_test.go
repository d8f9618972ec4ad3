package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// FuzzRedact checks that Redact never panics and reports its changes truthfully, and
// that the JSON handler's every line stays valid JSON whatever the values hold.
func FuzzRedact(f *testing.F) {
	for _, s := range append(canaries(),
		"password=hunter2", `{"api_key":"x"}`, "Authorization: Bearer abc", "redis://:pw@h",
		`{\"token\":\"t\"}`, "map[X-Api-Key:[k]]", "token=Bearer abc, x", `["token=",1,"x"]`) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, changed := redact(s)
		if changed == (got == s) {
			t.Fatalf("changed=%v: %q -> %q", changed, s, got)
		}
		var buf bytes.Buffer
		New(&buf, slog.LevelInfo, true).Info(s, "s", s, "map", map[string]string{"k": s, "api_key": s},
			"list", []string{s, "token=", s}, "bytes", []byte(s))
		sc := bufio.NewScanner(&buf)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if !json.Valid(sc.Bytes()) {
				t.Fatalf("invalid JSON line for %q:\n%s", s, sc.Bytes())
			}
		}
	})
}
