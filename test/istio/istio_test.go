package istio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

// The cases `sluice istio` is documented with: Sluice's Services in the mesh (the default),
// Sluice outside the cluster by name and by IP, and a narrowed gateway listener.
var cases = map[string][]string{
	"in-mesh":       nil,
	"external-dns":  {"--extproc-host", "sluice-extproc.example.com", "--dispatcher-host", "sluice.example.com"},
	"external-ip":   {"--extproc-host", "10.1.2.3", "--dispatcher-host", "10.1.2.4", "--listener-port", "8080"},
	"custom-gw":     {"--namespace", "gw", "--selector", "app=edge,tier=front", "--gateway", "gw/edge", "--hosts", "ai.example.com,llm.example.com"},
	"small-buffers": {"--max-request-bytes", "1048576", "--name", "ai"},
}

// TestRenderedResourcesMatchIstioCRDs validates every resource `sluice istio` renders
// against the CRDs Istio ships (istio.io/api's kubernetes/customresourcedefinitions.gen.yaml,
// at the version pinned in go.mod), offline, the way the API server would on kubectl apply:
// the openAPIV3Schema (types, enums, oneOfs), its x-kubernetes-validations CEL rules, and
// pruning (a field the schema does not know is an error here, not silently dropped). The
// spec is also decoded strictly into istio.io/api's own types. Finally the YAML (what
// operators apply) must say exactly what the JSON output says.
func TestRenderedResourcesMatchIstioCRDs(t *testing.T) {
	bin := sluiceBinary(t)
	crds := loadCRDs(t)
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			yamlOut := run(t, bin, append([]string{"istio"}, args...)...)
			jsonOut := run(t, bin, append([]string{"istio", "--output", "json"}, args...)...)
			var list struct {
				Items []map[string]any `json:"items"`
			}
			if err := utiljson.Unmarshal(jsonOut, &list); err != nil {
				t.Fatal(err)
			}
			docs := yamlDocs(t, yamlOut)
			if len(docs) != len(list.Items) {
				t.Fatalf("YAML has %d documents, JSON %d items", len(docs), len(list.Items))
			}
			kinds := map[string]int{}
			for i, doc := range docs {
				if !reflect.DeepEqual(doc, list.Items[i]) {
					t.Errorf("document %d: YAML and JSON output differ:\nyaml %v\njson %v", i, doc, list.Items[i])
				}
				kind, _ := doc["kind"].(string)
				kinds[kind]++
				validateResource(t, crds, doc)
			}
			if kinds["EnvoyFilter"] != 1 || kinds["VirtualService"] != 1 || kinds["DestinationRule"] != 1 {
				t.Errorf("kinds %v: want one EnvoyFilter, VirtualService and DestinationRule", kinds)
			}
			wantSE := 0
			if strings.HasPrefix(name, "external") {
				wantSE = 2
			}
			if kinds["ServiceEntry"] != wantSE {
				t.Errorf("%d ServiceEntries, want %d", kinds["ServiceEntry"], wantSE)
			}
		})
	}
}

// TestEnvoyConfigYAMLMatchesJSON: the YAML `sluice envoy-config` prints (which the sluice
// module's tests cannot parse: it has no YAML library) says exactly what its JSON output
// says, and the JSON is what the sluice module's tests decode as Envoy protos.
func TestEnvoyConfigYAMLMatchesJSON(t *testing.T) {
	bin := sluiceBinary(t)
	for _, args := range [][]string{
		{"--format", "static"},
		{"--format", "ecds", "--xds-addr", "xds.sluice.svc.cluster.local:9002"},
		{"--bootstrap", "--extproc-addr", "unix:/var/run/sluice/extproc.sock"},
	} {
		yamlOut := run(t, bin, append([]string{"envoy-config"}, args...)...)
		jsonOut := run(t, bin, append([]string{"envoy-config", "--output", "json"}, args...)...)
		j, err := yaml.YAMLToJSON(yamlOut)
		if err != nil {
			t.Fatalf("%v: YAML: %v", args, err)
		}
		var fromYAML, fromJSON any
		if err := utiljson.Unmarshal(j, &fromYAML); err != nil {
			t.Fatal(err)
		}
		if err := utiljson.Unmarshal(jsonOut, &fromJSON); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromYAML, fromJSON) {
			t.Errorf("%v: YAML and JSON output differ:\nyaml %s\njson %s", args, j, jsonOut)
		}
	}
}

// TestValidatorRejects makes sure the validation above can fail: each mutation of a
// rendered EnvoyFilter breaks one rule of Istio's CRD.
func TestValidatorRejects(t *testing.T) {
	bin := sluiceBinary(t)
	crds := loadCRDs(t)
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := utiljson.Unmarshal(run(t, bin, "istio", "--output", "json"), &list); err != nil {
		t.Fatal(err)
	}
	ef := list.Items[0]
	raw, _ := json.Marshal(ef)
	mutations := map[string]func(spec map[string]any){
		"enum":          func(s map[string]any) { patch(s)["applyTo"] = "HTTP_FILTERS" },
		"unknown field": func(s map[string]any) { patch(s)["aplyTo"] = "x" },
		"CEL rule":      func(s map[string]any) { s["targetRefs"] = []any{map[string]any{"kind": "Gateway", "name": "x"}} },
		"type":          func(s map[string]any) { s["priority"] = "high" },
	}
	for name, mutate := range mutations {
		var obj map[string]any
		_ = utiljson.Unmarshal(raw, &obj)
		mutate(obj["spec"].(map[string]any))
		errs := crdErrors(crds, obj)
		if len(errs) == 0 {
			t.Errorf("%s: the mutated EnvoyFilter passed validation", name)
		}
		t.Logf("%s: rejected with %v", name, errs)
	}
}

func patch(spec map[string]any) map[string]any {
	return spec["configPatches"].([]any)[0].(map[string]any)
}

// validateResource checks obj against its CRD and decodes its spec strictly into Istio's
// proto type.
func validateResource(t *testing.T, crds map[string]*apiextensions.JSONSchemaProps, obj map[string]any) {
	t.Helper()
	for _, err := range crdErrors(crds, obj) {
		t.Errorf("%s %v: %v", obj["kind"], obj["metadata"], err)
	}
	// The envelope: nothing but apiVersion, kind, metadata (name, namespace) and spec.
	raw, _ := json.Marshal(obj)
	var env struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Spec json.RawMessage `json:"spec"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		t.Errorf("%s: %v", obj["kind"], err)
		return
	}
	var spec proto.Message
	switch env.Kind {
	case "EnvoyFilter":
		spec = &networking.EnvoyFilter{}
	case "VirtualService":
		spec = &networking.VirtualService{}
	case "DestinationRule":
		spec = &networking.DestinationRule{}
	case "ServiceEntry":
		spec = &networking.ServiceEntry{}
	default:
		t.Errorf("unexpected kind %q", env.Kind)
		return
	}
	if err := protojson.Unmarshal(env.Spec, spec); err != nil { // strict: unknown fields fail
		t.Errorf("%s spec is not an istio.io/api %T: %v", env.Kind, spec, err)
	}
}

// crdErrors validates obj as the API server would on create: schema, CEL rules, and
// fields the schema would prune.
func crdErrors(crds map[string]*apiextensions.JSONSchemaProps, obj map[string]any) []error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	schema := crds[apiVersion+"/"+kind]
	if schema == nil {
		return []error{fmt.Errorf("no CRD for %s/%s", apiVersion, kind)}
	}
	var errs []error
	validator, _, err := validation.NewSchemaValidator(schema)
	if err != nil {
		return []error{err}
	}
	for _, e := range validation.ValidateCustomResource(nil, obj, validator) {
		errs = append(errs, e)
	}
	structural, err := structuralschema.NewStructural(schema)
	if err != nil {
		return append(errs, err)
	}
	celErrs, _ := cel.NewValidator(structural, true, celconfig.PerCallLimit).
		Validate(context.Background(), nil, structural, obj, nil, celconfig.RuntimeCELCostBudget)
	for _, e := range celErrs {
		errs = append(errs, e)
	}
	clone, _ := json.Marshal(obj)
	var pruned map[string]any
	_ = utiljson.Unmarshal(clone, &pruned)
	opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
	for _, p := range pruning.PruneWithOptions(pruned, structural, true, opts) {
		errs = append(errs, fmt.Errorf("unknown field %s (the API server would prune it)", p))
	}
	return errs
}

// loadCRDs reads Istio's CRDs from the pinned istio.io/api module, keyed by
// "group/version/Kind".
func loadCRDs(t *testing.T) map[string]*apiextensions.JSONSchemaProps {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Fatalf("go list istio.io/api: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crds := map[string]*apiextensions.JSONSchemaProps{}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict([]byte(doc), &crd); err != nil {
			t.Fatalf("CRD: %v", err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				t.Fatal(err)
			}
			crds[crd.Spec.Group+"/"+v.Name+"/"+crd.Spec.Names.Kind] = &internal
		}
	}
	for _, k := range []string{"networking.istio.io/v1alpha3/EnvoyFilter", "networking.istio.io/v1/VirtualService",
		"networking.istio.io/v1/DestinationRule", "networking.istio.io/v1/ServiceEntry"} {
		if crds[k] == nil {
			t.Fatalf("no CRD schema for %s", k)
		}
	}
	return crds
}

// yamlDocs splits a multi-document YAML stream and converts each non-empty document to
// JSON values, as kubectl does (integers as int64, as the API server decodes them).
func yamlDocs(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for _, d := range strings.Split(string(out), "\n---\n") {
		j, err := yaml.YAMLToJSON([]byte(d))
		if err != nil {
			t.Fatalf("YAML: %v\n%s", err, d)
		}
		var m map[string]any
		if err := utiljson.Unmarshal(j, &m); err != nil {
			t.Fatal(err)
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
	return docs
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// sluiceBinary is $SLUICE_BIN, or the sluice command built from this checkout.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("SLUICE_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-istio-test-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-o", built, "./cmd/sluice")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}
