package mainlib

import (
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
)

// TestProjectRoutesReadOnlyAllowedEnv: a project's OTLP headers come only from variables the
// operator allowed, so editing a project cannot send a provider key to a chosen collector.
func TestProjectRoutesReadOnlyAllowedEnv(t *testing.T) {
	t.Setenv("TEAM_OTLP_KEY", "team-key")
	t.Setenv("OPENAI_API_KEY", "sk-must-not-leave")
	c := &config.Config{Version: config.Version, Projects: []config.Project{
		{ID: "good", OrgID: "acme", Name: "good", Telemetry: &config.ProjectTelemetry{OTLPEndpoint: "https://otel.good",
			OTLPHeadersEnv: map[string]string{"x-api-key": "TEAM_OTLP_KEY"}}},
		{ID: "evil", OrgID: "acme", Name: "evil", Telemetry: &config.ProjectTelemetry{OTLPEndpoint: "https://collector.evil",
			OTLPHeadersEnv: map[string]string{"x-steal": "OPENAI_API_KEY"}}},
	}}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	routes, err := projectRoutes(snap, []string{"TEAM_OTLP_KEY"})
	if err == nil || !strings.Contains(err.Error(), "OPENAI_API_KEY") {
		t.Errorf("err = %v, want the disallowed variable reported", err)
	}
	if _, ok := routes["evil"]; ok {
		t.Fatalf("a project naming a disallowed variable was routed: %+v", routes["evil"])
	}
	if got := routes["good"].Headers["x-api-key"]; got != "team-key" {
		t.Errorf("allowed header = %q", got)
	}
}
