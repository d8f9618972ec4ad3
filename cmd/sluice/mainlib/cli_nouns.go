package mainlib

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fieldKind says how a flag's text becomes a JSON value.
type fieldKind int

const (
	fString fieldKind = iota // a string; on update, "" clears the field
	fList                    // comma-separated strings
	fInt                     // a whole number
	fObject                  // a JSON object given as text
	fArray                   // a JSON array given as text
)

// cliField maps one flag to one field of the API's JSON body.
type cliField struct {
	flag, json string
	kind       fieldKind
	usage      string
	createOnly bool
}

// noun is one admin resource: its CLI noun is also its path under /v1/.
type noun struct {
	name    string
	summary string
	verbs   []string
	fields  []cliField
	columns []column
	apiKey  bool // create and update accept --api-key-env and --api-key-file
}

var (
	scopeField = cliField{flag: "scope", json: "scope", usage: "scope, e.g. ORG:acme, TEAM:eng, PROJECT:web, PRINCIPAL:alice"}
	nameField  = cliField{flag: "name", json: "name", usage: "name"}
	idField    = cliField{flag: "id", json: "id", usage: "id (a slug such as acme; default: generated)", createOnly: true}
	orgField   = cliField{flag: "org", json: "org_id", usage: "organization id"}
)

var keysNoun = &noun{name: "virtual-keys", summary: "client keys: the secret is shown once, on create and rotate",
	verbs: []string{"create", "get", "list", "update", "rotate", "disable", "enable", "revoke"},
	fields: []cliField{nameField, scopeField,
		{flag: "principal", json: "principal_id", usage: "principal (person) the key is issued to"},
		{flag: "routing-policy", json: "routing_policy_id", usage: "routing policy id (rp_…)"},
		{flag: "config-json", json: "config", kind: fObject, usage: `key config as JSON: {"models_allowed":[…],"model_aliases":{…},"policy_rules":{…},…}`},
		{flag: "expires-at", json: "expires_at", usage: "expiry, RFC 3339 (e.g. 2026-12-31T00:00:00Z)"}},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"SCOPE", "scope"}, {"STATUS", "status"}, {"PREFIX", "display_prefix"},
		{"ROUTING POLICY", "routing_policy_id"}, {"EXPIRES", "expires_at"}},
}

var providersNoun = &noun{name: "model-providers", summary: "upstream accounts; credentials are write-only",
	verbs: []string{"create", "get", "list", "update", "delete", "rewrap"}, apiKey: true,
	fields: []cliField{nameField, scopeField,
		{flag: "type", json: "type", usage: "openai, anthropic, azure, bedrock, vertex, gemini or openai-compatible"},
		{flag: "base-url", json: "base_url", usage: "base URL (required for openai-compatible and azure)"},
		{flag: "models", json: "models", kind: fList, usage: "comma-separated models it serves"},
		{flag: "fallback-priority", json: "fallback_priority", kind: fInt, usage: "order among the scope's providers, lower first"},
		{flag: "provider-config-json", json: "provider_config", kind: fObject, usage: "type-specific settings as JSON (region, deployments, api_version)"},
		{flag: "limits-json", json: "limits", kind: fObject, usage: `rate limits across every key: {"rpm":600,"tpm":200000,"rpd":0}`},
		{flag: "timeouts-json", json: "timeouts", kind: fObject, usage: `per-attempt timeouts: {"connect_ms":5000,"first_byte_ms":60000,"stream_idle_ms":300000}`},
		{flag: "pricing-json", json: "pricing", kind: fObject, usage: `prices over the bundled table, USD per million tokens: {"my-model*":{"input":"0.5","output":"1.5"}}`}},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"TYPE", "type"}, {"SCOPE", "scope"}, {"BASE URL", "base_url"},
		{"MODELS", "models"}, {"PRIORITY", "fallback_priority"}, {"CREDENTIALS", "has_credentials"}},
}

var policiesNoun = &noun{name: "routing-policies", summary: "ordered provider chains keys can use",
	verbs: []string{"create", "get", "list", "update", "delete"},
	fields: []cliField{nameField, scopeField,
		{flag: "strategy", json: "strategy", usage: "ordered (default)"},
		{flag: "providers", json: "providers", kind: fList, usage: "comma-separated provider ids, in order"}},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"SCOPE", "scope"}, {"STRATEGY", "strategy"}, {"PROVIDERS", "providers"}},
}

var budgetsNoun = &noun{name: "budgets", summary: "spend limits per scope and window",
	verbs: []string{"create", "get", "list", "update", "delete"},
	fields: []cliField{nameField, scopeField,
		{flag: "window", json: "window", usage: "minute, hour, day, week, month or total"},
		{flag: "limit", json: "limit_usd", usage: "limit in USD, e.g. 5000 or 12.50"},
		{flag: "on-breach", json: "on_breach", usage: "block or warn"}},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"SCOPE", "scope"}, {"WINDOW", "window"}, {"LIMIT USD", "limit_usd"},
		{"ON BREACH", "on_breach"}},
}

var guardrailsNoun = &noun{name: "guardrails", summary: "request, response and stream inspection keys and scopes attach",
	verbs: []string{"create", "get", "list", "update", "delete"},
	fields: []cliField{idField, nameField,
		{flag: "kind", json: "kind", usage: "regex, pii, secrets or webhook"},
		{flag: "directions", json: "directions", kind: fList, usage: "comma-separated: request, response, stream"},
		{flag: "action", json: "action", usage: "detectors: block (default) or redact"},
		{flag: "patterns-json", json: "patterns", kind: fArray, usage: `regex kind: [{"name":"PROJECT_X","pattern":"(?i)project x"}]`},
		{flag: "entities", json: "entities", kind: fList, usage: "pii or secrets kind: comma-separated entities (default all)"},
		{flag: "webhook-json", json: "webhook", kind: fObject, usage: `webhook kind: {"url":…,"signing_secret_env":…,"window_chars":…}`},
		{flag: "failure-mode", json: "failure_mode", usage: "fail_closed (default) or fail_open"},
		{flag: "timeout-ms", json: "timeout_ms", kind: fInt, usage: "evaluation timeout in milliseconds (default 1000)"}},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"KIND", "kind"}, {"DIRECTIONS", "directions"}, {"ACTION", "action"},
		{"FAILURE MODE", "failure_mode"}}}

// scopeGuardrailsField attaches guardrails to every key below a tenancy node.
var scopeGuardrailsField = cliField{flag: "guardrails", json: "guardrails", kind: fList, usage: "comma-separated guardrail ids for every key below"}

var orgsNoun = &noun{name: "organizations", summary: "tenancy roots",
	verbs: []string{"create", "get", "list", "update", "delete"}, fields: []cliField{idField, nameField, scopeGuardrailsField},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"GUARDRAILS", "guardrails"}}}

var teamsNoun = &noun{name: "teams", summary: "teams of an organization",
	verbs: []string{"create", "get", "list", "update", "delete"}, fields: []cliField{idField, orgField, nameField, scopeGuardrailsField},
	columns: []column{{"ID", "id"}, {"ORG", "org_id"}, {"NAME", "name"}, {"GUARDRAILS", "guardrails"}}}

var projectsNoun = &noun{name: "projects", summary: "projects of an organization or team",
	verbs:   []string{"create", "get", "list", "update", "delete"},
	fields:  []cliField{idField, orgField, {flag: "team", json: "team_id", usage: "team id"}, nameField, scopeGuardrailsField},
	columns: []column{{"ID", "id"}, {"ORG", "org_id"}, {"TEAM", "team_id"}, {"NAME", "name"}, {"GUARDRAILS", "guardrails"}}}

var principalsNoun = &noun{name: "principals", summary: "people (or services) keys are issued to",
	verbs:   []string{"create", "get", "list", "update", "delete"},
	fields:  []cliField{idField, orgField, nameField, {flag: "email", json: "email", usage: "email address"}},
	columns: []column{{"ID", "id"}, {"ORG", "org_id"}, {"NAME", "name"}, {"EMAIL", "email"}}}

var tokensNoun = &noun{name: "api-tokens", summary: "scoped admin API tokens: the secret is shown once",
	verbs: []string{"create", "get", "list", "delete"},
	fields: []cliField{nameField,
		{flag: "permissions", json: "permissions", kind: fList, usage: "comma-separated, e.g. virtualKeys:create,modelProviders:update"},
		{flag: "expires-at", json: "expires_at", usage: "expiry, RFC 3339"}},
	columns: []column{{"ID", "id"}, {"NAME", "name"}, {"PERMISSIONS", "permissions"}, {"PREFIX", "display_prefix"},
		{"EXPIRES", "expires_at"}}}

func (n *noun) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: sluice %s <verb> [id] [flags]\n\n%s. Verbs: %s.\n", n.name, n.summary, strings.Join(n.verbs, ", "))
	fmt.Fprintf(w, "Run sluice %s <verb> -h for its flags. The admin API is $SLUICE_URL (default %s),\n"+
		"authenticated with $SLUICE_API_TOKEN.\n", n.name, defaultAdminURL)
}

// runNoun runs `sluice <noun> <verb> …`.
func runNoun(ctx context.Context, n *noun, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		n.usage(stderr)
		if len(args) == 0 {
			return fmt.Errorf("%s: no verb given", n.name)
		}
		return nil
	}
	verb := args[0]
	if !slices.Contains(n.verbs, verb) {
		n.usage(stderr)
		return fmt.Errorf("%s: unknown verb %q", n.name, verb)
	}
	fs := flag.NewFlagSet("sluice "+n.name+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := &output{columns: n.columns, stdout: stdout, stderr: stderr}
	fs.StringVar(&out.format, "format", "table", "output format: json or table")
	vals := map[string]*string{}
	var apiKeyEnv, apiKeyFile, scope *string
	var grace *time.Duration
	switch verb {
	case "create", "update":
		for _, f := range n.fields {
			if verb == "create" || !f.createOnly {
				vals[f.flag] = fs.String(f.flag, "", f.usage)
			}
		}
		if n.apiKey {
			apiKeyEnv = fs.String("api-key-env", "", "read the provider API key from this environment variable")
			apiKeyFile = fs.String("api-key-file", "", "read the provider API key from this file")
		}
	case "list":
		scope = fs.String("scope", "", "only resources in this scope, e.g. TEAM:eng")
	case "rotate":
		grace = fs.Duration("grace", 0, "how long the old secret keeps working (default: the server's, 24h)")
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := out.check(); err != nil {
		return err
	}
	withID := verb != "create" && verb != "list" && verb != "rewrap"
	switch {
	case withID && len(pos) != 1:
		return fmt.Errorf("usage: sluice %s %s <id> [flags]", n.name, verb)
	case !withID && len(pos) > 0:
		return fmt.Errorf("%s %s: unexpected argument %q", n.name, verb, pos[0])
	}
	var body map[string]any
	if verb == "create" || verb == "update" {
		if body, err = n.body(fs, vals, verb == "create"); err != nil {
			return err
		}
		if n.apiKey {
			if err := readAPIKey(body, *apiKeyEnv, *apiKeyFile); err != nil {
				return err
			}
		}
		if verb == "update" && len(body) == 0 {
			return fmt.Errorf("%s update: nothing to change; give at least one flag", n.name)
		}
	}
	c, err := newAPIClient()
	if err != nil {
		return err
	}
	base := "/v1/" + n.name
	var path string
	if withID {
		path = base + "/" + url.PathEscape(pos[0])
	}
	switch verb {
	case "rewrap": // re-seal credentials under the current primary master key
		v, err := c.do(ctx, "POST", base+"/rewrap", nil)
		if err != nil {
			return err
		}
		if out.format == "json" {
			return out.json(v)
		}
		m, _ := v.(map[string]any)
		fmt.Fprintf(stdout, "rewrapped %v credentials under key %v\n", m["rewrapped"], m["primary_key_id"])
		return nil
	case "create":
		v, err := c.do(ctx, "POST", base, body)
		if err != nil {
			return err
		}
		return out.one(v)
	case "list":
		q := ""
		if *scope != "" {
			q = "?scope=" + url.QueryEscape(*scope)
		}
		v, err := c.do(ctx, "GET", base+q, nil)
		if err != nil {
			return err
		}
		return out.list(v)
	case "get":
		v, err := c.do(ctx, "GET", path, nil)
		if err != nil {
			return err
		}
		return out.one(v)
	case "update":
		v, err := c.do(ctx, "PATCH", path, body)
		if err != nil {
			return err
		}
		return out.one(v)
	case "delete":
		if _, err := c.do(ctx, "DELETE", path, nil); err != nil {
			return err
		}
		if out.format == "json" {
			return out.json(map[string]any{"id": pos[0], "deleted": true})
		}
		fmt.Fprintf(stdout, "deleted %s\n", pos[0])
		return nil
	}
	// Lifecycle actions: rotate, disable, enable, revoke.
	var ab any // nil: no body
	if grace != nil && setFlags(fs)["grace"] {
		if *grace < 0 || *grace%time.Second != 0 {
			return errors.New("--grace: want a non-negative whole number of seconds, e.g. 1h or 90s")
		}
		ab = map[string]any{"grace_seconds": int64(*grace / time.Second)}
	}
	v, err := c.do(ctx, "POST", path+"/"+verb, ab)
	if err != nil {
		return err
	}
	return out.one(v)
}

// body builds the JSON body from the flags given. On update, an empty string or list
// clears the field (JSON null in the merge patch).
func (n *noun) body(fs *flag.FlagSet, vals map[string]*string, create bool) (map[string]any, error) {
	given := setFlags(fs)
	body := map[string]any{}
	var errs []error
	for _, f := range n.fields {
		p, ok := vals[f.flag]
		if !ok || !given[f.flag] {
			continue
		}
		s := strings.TrimSpace(*p)
		if s == "" {
			if !create {
				body[f.json] = nil
			}
			continue
		}
		switch f.kind {
		case fString:
			body[f.json] = s
		case fList:
			var list []string
			for _, e := range strings.Split(s, ",") {
				if e = strings.TrimSpace(e); e != "" {
					list = append(list, e)
				}
			}
			body[f.json] = list
		case fInt:
			i, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("--%s: want a whole number", f.flag))
				continue
			}
			body[f.json] = i
		case fObject:
			var obj map[string]json.RawMessage
			if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
				errs = append(errs, fmt.Errorf("--%s: want a JSON object", f.flag))
				continue
			}
			body[f.json] = json.RawMessage(s)
		case fArray:
			var arr []json.RawMessage
			if err := json.Unmarshal([]byte(s), &arr); err != nil || arr == nil {
				errs = append(errs, fmt.Errorf("--%s: want a JSON array", f.flag))
				continue
			}
			body[f.json] = json.RawMessage(s)
		}
	}
	return body, errors.Join(errs...)
}

// readAPIKey puts the provider credential from an environment variable or a file into
// body, so it never appears on a command line.
func readAPIKey(body map[string]any, env, file string) error {
	switch {
	case env != "" && file != "":
		return errors.New("--api-key-env and --api-key-file are exclusive")
	case env != "":
		v := strings.TrimSpace(os.Getenv(env))
		if v == "" {
			return fmt.Errorf("--api-key-env: the environment variable %s is empty or unset", env)
		}
		body["api_key"] = v
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--api-key-file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return fmt.Errorf("--api-key-file: %s is empty", file)
		}
		body["api_key"] = v
	}
	return nil
}
