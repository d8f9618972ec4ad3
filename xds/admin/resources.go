package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// spec describes how the API serves one resource kind.
type spec struct {
	kind config.Kind
	path string // URL segment under /v1/
	perm string // permission resource name
	what string // human name, in messages
	// fields a client may set on create and change with PATCH; slug kinds also accept
	// "id" on create.
	fields []string
	slug   bool
	// writeOnly fields are accepted on create and PATCH but never stored as given
	// (a provider's api_key is sealed).
	writeOnly []string
	// hidden stored fields are never rendered.
	hidden []string
	// defaults fills absent fields of a create body.
	defaults map[string]string
	// prepare sets server-owned state after the body is decoded; old is nil on create.
	prepare func(s *Server, res, old config.Resource, wo map[string]json.RawMessage) (*prepared, error)
	// refs checks references: problems refuse the write, warnings are returned with it.
	refs func(ctx context.Context, s *Server, res config.Resource) (problems, warnings []string, err error)
	// view adds computed fields to a rendered resource.
	view func(s *Server, res config.Resource, v map[string]any)
	// scopes lists the scopes a resource matches in ?scope= filters.
	scopes func(res config.Resource) []config.Scope
	// inUse names resources that refer to id and so block its deletion.
	inUse func(ctx context.Context, s *Server, id string) ([]string, error)
}

// prepared is what a spec's prepare hook adds to a write.
type prepared struct {
	oneTime        map[string]any // rendered once, in this response only (a secret)
	index, unindex map[string]string
}

var specs = []*spec{
	{kind: config.KindVirtualKey, path: "virtual-keys", perm: permVirtualKeys, what: "virtual key",
		fields: []string{"name", "scope", "principal_id", "expires_at", "routing_policy_id", "config"},
		hidden: []string{"hash", "previous_hash", "previous_hash_valid_until"}, defaults: defaultScope,
		prepare: prepareKey, refs: keyRefs, view: keyView, scopes: ownScope},
	{kind: config.KindModelProvider, path: "model-providers", perm: permModelProviders, what: "model provider",
		fields: []string{"name", "type", "base_url", "provider_config", "limits", "pricing", "timeouts", "models", "fallback_priority", "scope",
			"credentials_env"},
		writeOnly: []string{"api_key"}, hidden: []string{"credentials"}, defaults: defaultScope, slug: true,
		prepare: prepareProvider, refs: scopeRefs, view: providerView, scopes: ownScope, inUse: providerInUse},
	{kind: config.KindRoutingPolicy, path: "routing-policies", perm: permRoutingPolicies, what: "routing policy",
		fields:   []string{"name", "scope", "strategy", "providers"},
		defaults: map[string]string{"scope": `"` + DefaultScope.String() + `"`, "strategy": `"ordered"`},
		refs:     policyRefs, scopes: ownScope, inUse: policyInUse},
	{kind: config.KindBudget, path: "budgets", perm: permBudgets, what: "budget",
		fields: []string{"name", "scope", "window", "limit_usd", "on_breach"}, refs: scopeRefs, scopes: ownScope},
	{kind: config.KindGuardrail, path: "guardrails", perm: permGuardrails, what: "guardrail",
		fields: []string{"name", "kind", "directions", "action", "patterns", "entities", "webhook", "failure_mode",
			"timeout_ms"}, slug: true, inUse: guardrailInUse},
	{kind: config.KindOrganization, path: "organizations", perm: permOrganizations, what: "organization",
		fields: []string{"name", "guardrails"}, slug: true, refs: parentRefs},
	{kind: config.KindTeam, path: "teams", perm: permTeams, what: "team",
		fields: []string{"org_id", "name", "guardrails"}, slug: true, refs: parentRefs, scopes: parentScopes},
	{kind: config.KindProject, path: "projects", perm: permProjects, what: "project",
		fields: []string{"org_id", "team_id", "name", "guardrails", "telemetry"}, slug: true, refs: parentRefs, scopes: parentScopes},
	{kind: config.KindPrincipal, path: "principals", perm: permPrincipals, what: "principal",
		fields: []string{"org_id", "name", "email"}, slug: true, refs: parentRefs, scopes: parentScopes},
}

var defaultScope = map[string]string{"scope": `"` + DefaultScope.String() + `"`}

// checkFields lists every field of body a client may not set.
func (sp *spec) checkFields(body map[string]json.RawMessage, create bool) []string {
	var problems []string
	for k := range body {
		if slices.Contains(sp.fields, k) || slices.Contains(sp.writeOnly, k) || (create && sp.slug && k == "id") {
			continue
		}
		problems = append(problems, fmt.Sprintf("field %q is unknown or read-only", k))
	}
	slices.Sort(problems)
	return problems
}

// pullWriteOnly removes sp's write-only fields from body and returns them.
func (sp *spec) pullWriteOnly(body map[string]json.RawMessage) map[string]json.RawMessage {
	wo := map[string]json.RawMessage{}
	for _, k := range sp.writeOnly {
		if v, ok := body[k]; ok {
			wo[k] = v
			delete(body, k)
		}
	}
	return wo
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, sp *spec) error {
	ctx := r.Context()
	body, err := readObject(r)
	if err != nil {
		return err
	}
	problems := sp.checkFields(body, true)
	wo := sp.pullWriteOnly(body)
	var id string
	if raw, ok := body["id"]; ok {
		if json.Unmarshal(raw, &id) != nil || id == "" {
			problems = append(problems, "id must be a non-empty string")
		}
	}
	if id == "" {
		id = config.NewID(sp.kind)
	}
	now := s.now().UTC()
	body["id"], body["created_at"], body["updated_at"] = mustJSON(id), mustJSON(now), mustJSON(now)
	for k, v := range sp.defaults {
		if _, ok := body[k]; !ok {
			body[k] = json.RawMessage(v)
		}
	}
	if len(problems) > 0 {
		return invalid(problems)
	}
	res, p, warnings, err := s.build(ctx, sp, body, nil, wo)
	if err != nil {
		return err
	}
	val, err := json.Marshal(res)
	if err != nil {
		return err
	}
	doc, err := s.store.PutIndexed(ctx, sp.kind, id, val, store.CreateOnly, p.index, nil)
	if err != nil {
		return storeError(err, sp.what, id)
	}
	v := s.render(sp, res, doc.Revision)
	for k, x := range p.oneTime {
		v[k] = x
	}
	if len(warnings) > 0 {
		v["warnings"] = warnings
	}
	setETag(w, doc.Revision)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// build decodes a document from body, applies the spec's hooks and validates it, with
// every problem in one 400.
func (s *Server) build(ctx context.Context, sp *spec, body map[string]json.RawMessage, old config.Resource,
	wo map[string]json.RawMessage) (config.Resource, *prepared, []string, error) {
	res, err := config.DecodeResource(sp.kind, mustJSON(body))
	if err != nil {
		return nil, nil, nil, invalid([]string{strings.TrimPrefix(err.Error(), "decode "+string(sp.kind)+": ")})
	}
	p := &prepared{}
	if sp.prepare != nil {
		if p, err = sp.prepare(s, res, old, wo); err != nil {
			return nil, nil, nil, err
		}
	}
	problems := flatten(res.Validate())
	var warnings []string
	if sp.refs != nil {
		pr, wr, err := sp.refs(ctx, s, res)
		if err != nil {
			return nil, nil, nil, err
		}
		problems, warnings = append(problems, pr...), wr
	}
	if len(problems) > 0 {
		return nil, nil, nil, invalid(problems)
	}
	return res, p, warnings, nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, sp *spec) error {
	id := r.PathValue("id")
	res, doc, err := s.load(r.Context(), sp, id)
	if err != nil {
		return err
	}
	setETag(w, doc.Revision)
	writeJSON(w, http.StatusOK, s.render(sp, res, doc.Revision))
	return nil
}

// load reads and decodes one resource; a 404 if absent.
func (s *Server) load(ctx context.Context, sp *spec, id string) (config.Resource, store.Doc, error) {
	if config.ValidateID(sp.kind, id) != nil {
		return nil, store.Doc{}, notFound(sp.what, id)
	}
	doc, err := s.store.Get(ctx, sp.kind, id)
	if err != nil {
		return nil, doc, storeError(err, sp.what, id)
	}
	res, err := config.DecodeResource(sp.kind, doc.Value)
	if err != nil {
		return nil, doc, err
	}
	return res, doc, nil
}

type listBody struct {
	Data []map[string]any `json:"data"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, sp *spec) error {
	var filter *config.Scope
	if q := r.URL.Query().Get("scope"); q != "" {
		sc, err := config.ParseScope(q)
		if err != nil {
			return badRequest("invalid_scope", err.Error())
		}
		filter = &sc
	}
	docs, err := s.store.List(r.Context(), sp.kind)
	if err != nil {
		return err
	}
	out := listBody{Data: []map[string]any{}}
	for _, doc := range docs {
		res, err := config.DecodeResource(sp.kind, doc.Value)
		if err != nil {
			s.logger.Warn("admin: skipping undecodable document", "kind", sp.kind, "id", doc.ID, "err", err)
			continue
		}
		if filter != nil && (sp.scopes == nil || !slices.Contains(sp.scopes(res), *filter)) {
			continue
		}
		out.Data = append(out.Data, s.render(sp, res, doc.Revision))
	}
	writeJSON(w, http.StatusOK, &out)
	return nil
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, sp *spec) error {
	ctx := r.Context()
	id := r.PathValue("id")
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	patch, err := readObject(r)
	if err != nil {
		return err
	}
	problems := sp.checkFields(patch, false)
	wo := sp.pullWriteOnly(patch)
	if len(problems) > 0 {
		return invalid(problems)
	}
	old, doc, err := s.load(ctx, sp, id)
	if err != nil {
		return err
	}
	if want != 0 && want != doc.Revision {
		return storeError(store.ErrConflict, sp.what, id)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(mergePatch(doc.Value, mustJSON(patch)), &body); err != nil {
		return err
	}
	body["updated_at"] = mustJSON(s.now().UTC())
	res, p, warnings, err := s.build(ctx, sp, body, old, wo)
	if err != nil {
		return err
	}
	return s.write(w, r, sp, res, doc.Revision, p, warnings)
}

// write stores res at ifRevision (CAS) and renders it.
func (s *Server) write(w http.ResponseWriter, r *http.Request, sp *spec, res config.Resource, ifRevision int64,
	p *prepared, warnings []string) error {
	val, err := json.Marshal(res)
	if err != nil {
		return err
	}
	doc, err := s.store.PutIndexed(r.Context(), sp.kind, res.ResourceID(), val, ifRevision, p.index, p.unindex)
	if err != nil {
		return storeError(err, sp.what, res.ResourceID())
	}
	v := s.render(sp, res, doc.Revision)
	for k, x := range p.oneTime {
		v[k] = x
	}
	if len(warnings) > 0 {
		v["warnings"] = warnings
	}
	setETag(w, doc.Revision)
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, sp *spec) error {
	ctx := r.Context()
	id := r.PathValue("id")
	want, err := ifMatch(r)
	if err != nil {
		return err
	}
	if _, _, err := s.load(ctx, sp, id); err != nil {
		return err
	}
	if sp.inUse != nil {
		users, err := sp.inUse(ctx, s, id)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return &Error{Status: http.StatusConflict, Code: "in_use",
				Message: fmt.Sprintf("The %s %q is in use by %s.", sp.what, id, strings.Join(users, ", ")), Details: users}
		}
	}
	if err := s.store.Delete(ctx, sp.kind, id, want); err != nil {
		return storeError(err, sp.what, id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// render is the public form of res: its JSON without hidden fields, plus the store
// revision and computed fields.
func (s *Server) render(sp *spec, res config.Resource, rev int64) map[string]any {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(mustJSON(res), &m)
	v := make(map[string]any, len(m)+2)
	for k, x := range m {
		if !slices.Contains(sp.hidden, k) {
			v[k] = x
		}
	}
	v["revision"] = rev
	if sp.view != nil {
		sp.view(s, res, v)
	}
	return v
}

// mergePatch applies an RFC 7396 JSON merge patch to target.
func mergePatch(target, patch json.RawMessage) json.RawMessage {
	var p map[string]json.RawMessage
	if !isObject(patch) || json.Unmarshal(patch, &p) != nil {
		return patch
	}
	var t map[string]json.RawMessage
	if !isObject(target) || json.Unmarshal(target, &t) != nil || t == nil {
		t = map[string]json.RawMessage{}
	}
	for k, v := range p {
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return mustJSON(t)
}

func isObject(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

// mustJSON marshals plain data, which cannot fail.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("admin: marshal %T: %v", v, err))
	}
	return b
}

// exists reports whether (kind, id) is stored.
func (s *Server) exists(ctx context.Context, kind config.Kind, id string) (bool, error) {
	if config.ValidateID(kind, id) != nil {
		return false, nil
	}
	_, err := s.store.Get(ctx, kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

var scopeKinds = map[config.ScopeKind]config.Kind{
	config.ScopeOrg: config.KindOrganization, config.ScopeTeam: config.KindTeam,
	config.ScopeProject: config.KindProject, config.ScopePrincipal: config.KindPrincipal,
	config.ScopeVirtualKey: config.KindVirtualKey,
}

// scopeWarning warns when sc names no stored resource. Scopes are not enforced: a scope
// such as ORG:acme may be used before (or without) creating the organization.
func (s *Server) scopeWarning(ctx context.Context, sc config.Scope) ([]string, error) {
	kind, ok := scopeKinds[sc.Kind]
	if !ok || sc.IsZero() {
		return nil, nil
	}
	found, err := s.exists(ctx, kind, sc.ID)
	if err != nil || found {
		return nil, err
	}
	return []string{fmt.Sprintf("scope %s: no %s %q exists", sc, strings.ReplaceAll(string(kind), "_", " "), sc.ID)}, nil
}

func scopeOf(res config.Resource) config.Scope {
	switch v := res.(type) {
	case *config.VirtualKey:
		return v.Scope
	case *config.ModelProvider:
		return v.Scope
	case *config.RoutingPolicy:
		return v.Scope
	case *config.Budget:
		return v.Scope
	}
	return config.Scope{}
}

func ownScope(res config.Resource) []config.Scope { return []config.Scope{scopeOf(res)} }

func scopeRefs(ctx context.Context, s *Server, res config.Resource) ([]string, []string, error) {
	w, err := s.scopeWarning(ctx, scopeOf(res))
	return nil, w, err
}

// parentScopes puts teams, projects and principals under their organization (and a
// project under its team).
func parentScopes(res config.Resource) []config.Scope {
	switch v := res.(type) {
	case *config.Team:
		return []config.Scope{{Kind: config.ScopeOrg, ID: v.OrgID}}
	case *config.Project:
		out := []config.Scope{{Kind: config.ScopeOrg, ID: v.OrgID}}
		if v.TeamID != "" {
			out = append(out, config.Scope{Kind: config.ScopeTeam, ID: v.TeamID})
		}
		return out
	case *config.Principal:
		return []config.Scope{{Kind: config.ScopeOrg, ID: v.OrgID}}
	}
	return nil
}

// parentRefs warns (as for scopes) when a parent organization or team does not exist, and
// requires the guardrails a scope attaches to exist.
func parentRefs(ctx context.Context, s *Server, res config.Resource) ([]string, []string, error) {
	var warnings []string
	for _, sc := range parentScopes(res) {
		w, err := s.scopeWarning(ctx, sc)
		if err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, w...)
	}
	problems, err := s.missingGuardrails(ctx, "guardrails", scopeGuardrails(res))
	return problems, warnings, err
}

// scopeGuardrails returns the guardrails a tenancy resource attaches.
func scopeGuardrails(res config.Resource) []string {
	switch v := res.(type) {
	case *config.Organization:
		return v.Guardrails
	case *config.Team:
		return v.Guardrails
	case *config.Project:
		return v.Guardrails
	}
	return nil
}

// missingGuardrails names each id in ids that is not a stored guardrail.
func (s *Server) missingGuardrails(ctx context.Context, field string, ids []string) ([]string, error) {
	var problems []string
	for i, id := range ids {
		ok, err := s.exists(ctx, config.KindGuardrail, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("%s[%d]: no guardrail %q", field, i, id))
		}
	}
	return problems, nil
}

// guardrailInUse lists the keys and scopes that attach guardrail id.
func guardrailInUse(ctx context.Context, s *Server, id string) ([]string, error) {
	var users []string
	err := s.each(ctx, config.KindVirtualKey, func(res config.Resource) {
		if k := res.(*config.VirtualKey); slices.Contains(k.Config.Guardrails, id) {
			users = append(users, "virtual key "+k.ID)
		}
	})
	for _, kind := range []config.Kind{config.KindOrganization, config.KindTeam, config.KindProject} {
		if err != nil {
			break
		}
		err = s.each(ctx, kind, func(res config.Resource) {
			if slices.Contains(scopeGuardrails(res), id) {
				users = append(users, strings.ReplaceAll(string(kind), "_", " ")+" "+res.ResourceID())
			}
		})
	}
	return users, err
}
