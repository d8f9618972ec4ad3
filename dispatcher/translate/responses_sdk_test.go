package translate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// The official OpenAI Node SDK parses what the Responses direction writes, streamed and
// not, and its stream accumulator agrees with it (testdata/responses_sdk.mjs). Skipped when
// node or the SDK (make deps-sdk) is missing; the end-to-end suite covers the full path.
func TestResponsesOfficialSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	sdk, err := filepath.Abs("../../test/sdk/node/node_modules/openai")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sdk, "index.mjs")); err != nil {
		t.Skip("openai SDK not installed (make deps-sdk)")
	}
	e := newEngine(t)
	fake, upstream := newFake(t)
	fake.Script("[sdk-text]", fakeprovider.Script{Text: "Hello from the SDK test.", Usage: fakeUsage})
	fake.Script("[sdk-fn]", fakeprovider.Script{Usage: fakeUsage})
	fake.Script("[sdk-custom]", fakeprovider.Script{Usage: fakeUsage})
	fake.Script("[sdk-cut]", fakeprovider.Script{Text: "This answer is cut short.", CutAfterEvents: 5, Usage: fakeUsage})
	fake.Script("[sdk-429]", fakeprovider.Script{Status: 429, Text: "slow down"})

	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/responses" {
			http.NotFound(w, r)
			return
		}
		req := responsesRequest(upstream, gjson.GetBytes(body, "stream").Bool(), string(body))
		res := e.Do(r.Context(), req, w)
		if !res.Committed {
			for k, v := range res.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(res.Status)
			_, _ = w.Write(res.Body)
		}
	}))
	defer gw.Close()

	cmd := exec.CommandContext(t.Context(), node, "testdata/responses_sdk.mjs")
	cmd.Env = append(os.Environ(), "OPENAI_SDK="+sdk, "BASE_URL="+gw.URL+"/v1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("SDK driver: %v\n%s", err, out)
	}
}
