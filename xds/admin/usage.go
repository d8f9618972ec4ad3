package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/money"
	"github.com/sluice-gateway/sluice/xds/store"
)

// budgetUsage answers GET /v1/budgets/{id}/usage: what the budget's current window has
// spent and holds in reservations, read from the counter store the gateway admits against.
func (s *Server) budgetUsage(w http.ResponseWriter, r *http.Request) error {
	if s.counters == nil {
		return &Error{Status: http.StatusNotImplemented, Code: "counters_unavailable",
			Message: "This control plane has no counter store (run it with --redis-url to share the gateway's)."}
	}
	res, _, err := s.load(r.Context(), budgetSpec(), r.PathValue("id"))
	if err != nil {
		return err
	}
	b := res.(*config.Budget)
	org, err := s.orgOf(r.Context(), b.Scope, 0)
	if err != nil {
		return err
	}
	now := s.now()
	win := counters.Window(b.Window)
	spent, reserved, err := s.counters.Usage(r.Context(), counters.OrgSlot(org),
		counters.Counter{Key: counters.BudgetKey(b.ID, win), Window: win, Unit: counters.UnitNanoUSD}, now)
	if err != nil {
		s.logger.Error("admin: reading budget usage", "budget_id", b.ID, "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "counters_unavailable", Message: "The counter store did not answer."}
	}
	start, end := win.Bounds(now)
	out := map[string]any{"budget_id": b.ID, "scope": b.Scope, "window": b.Window,
		"window_start": start.UTC().Format(time.RFC3339), "limit_usd": b.LimitNanoUSD,
		"spent_usd": money.NanoUSD(spent), "reserved_usd": money.NanoUSD(reserved), "on_breach": b.OnBreach}
	if !end.IsZero() {
		out["window_end"] = end.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func budgetSpec() *spec {
	for _, sp := range specs {
		if sp.kind == config.KindBudget {
			return sp
		}
	}
	panic("admin: no budget spec")
}

// orgOf is the organization a scope belongs to: budgets count in their organization's slot.
func (s *Server) orgOf(ctx context.Context, sc config.Scope, depth int) (string, error) {
	if sc.Kind == config.ScopeOrg {
		return sc.ID, nil
	}
	kinds := map[config.ScopeKind]config.Kind{config.ScopeTeam: config.KindTeam, config.ScopeProject: config.KindProject,
		config.ScopePrincipal: config.KindPrincipal, config.ScopeVirtualKey: config.KindVirtualKey}
	kind, ok := kinds[sc.Kind]
	if !ok || depth > 2 {
		return "", &Error{Status: http.StatusConflict, Code: "scope_unresolved", Message: "The budget's scope " + sc.String() + " has no organization."}
	}
	doc, err := s.store.Get(ctx, kind, sc.ID)
	if errors.Is(err, store.ErrNotFound) {
		return "", &Error{Status: http.StatusConflict, Code: "scope_unresolved", Message: "The budget's scope " + sc.String() + " does not exist."}
	}
	if err != nil {
		return "", err
	}
	res, err := config.DecodeResource(kind, doc.Value)
	if err != nil {
		return "", err
	}
	switch v := res.(type) {
	case *config.Team:
		return v.OrgID, nil
	case *config.Project:
		return v.OrgID, nil
	case *config.Principal:
		return v.OrgID, nil
	case *config.VirtualKey:
		return s.orgOf(ctx, v.Scope, depth+1)
	}
	return "", errors.New("admin: unexpected scope document")
}
