package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ferryci/ferry/pkg/config"
)

// TestSchemaRejects: values that cannot work fail helm template (and so
// helm install) before anything is applied, naming the offending value.
func TestSchemaRejects(t *testing.T) {
	cases := []struct {
		name   string
		values string
		want   []string // all must appear in helm's error
	}{
		{"misspelt top-level value", "replicas: 3\n", []string{"additional properties 'replicas' not allowed"}},
		{"replicas not a number", "replicaCount: three\n", []string{"at '/replicaCount'", "want integer"}},
		{"no replicas", "replicaCount: 0\n", []string{"at '/replicaCount'", "minimum"}},
		{"misspelt config option", "config:\n  jenkins:\n    ulr: https://jenkins/\n", []string{"at '/config/jenkins'", "additional properties 'ulr' not allowed"}},
		{"unknown config section", "config:\n  webhook:\n    secret: x\n", []string{"at '/config'", "'webhook'"}},
		{"log level", "config:\n  telemetry:\n    logLevel: verbose\n", []string{"at '/config/telemetry/logLevel'", "'debug', 'info', 'warn', 'error'"}},
		{"duration in words", "config:\n  dispatch:\n    reclaimAfter: one minute\n", []string{"at '/config/dispatch/reclaimAfter'"}},
		{"jenkins url without scheme", "config:\n  jenkins:\n    url: jenkins.example.com\n", []string{"at '/config/jenkins/url'"}},
		{"agents namespace not a DNS label", "config:\n  agents:\n    namespace: CI_Agents\n", []string{"at '/config/agents/namespace'"}},
		{"pipeline without job", "config:\n  pipelines:\n    - name: app\n      repo: acme/app\n", []string{"at '/config/pipelines/0'", "'job'"}},
		{"pipeline event", "config:\n  pipelines:\n    - {name: app, repo: acme/app, job: app, events: [merge]}\n", []string{"at '/config/pipelines/0/events/0'"}},
		{"environment without namespace", "config:\n  promotion:\n    apps:\n      - name: web\n        source: r/ci/web\n        target: r/rel/web\n        environments: [{name: test, deployments: [web]}]\n",
			[]string{"at '/config/promotion/apps/0/environments/0'", "'namespace'"}},
		{"image pull policy", "image:\n  pullPolicy: Sometimes\n", []string{"at '/image/pullPolicy'"}},
		{"image digest", "image:\n  digest: latest\n", []string{"at '/image/digest'"}},
		{"anti-affinity preset", "podAntiAffinity: strict\n", []string{"at '/podAntiAffinity'", "'soft', 'hard'"}},
		{"service type", "service:\n  type: Ingress\n", []string{"at '/service/type'"}},
		{"port out of range", "containerPort: 70000\n", []string{"at '/containerPort'", "maximum"}},
		{"webhook secret with a comma", "secrets:\n  githubWebhookSecrets: [\"a,b\"]\n", []string{"at '/secrets/githubWebhookSecrets/0'"}},
		{"pdb percentage", "podDisruptionBudget:\n  maxUnavailable: half\n", []string{"at '/podDisruptionBudget/maxUnavailable'"}},
		{"ingress path", "ingress:\n  enabled: true\n  hosts: [{host: a, paths: [{path: hooks, pathType: Prefix}]}]\n", []string{"at '/ingress/hosts/0/paths/0/path'"}},
		{"extra namespace", "rbac:\n  extraNamespaces: [\"\"]\n", []string{"at '/rbac/extraNamespaces/0'"}},
		{"misspelt nested value", "serviceAccount:\n  create: true\n  annotation: {}\n", []string{"at '/serviceAccount'", "'annotation'"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := renderErr(t, []string{writeValues(t, tc.values)})
			if err == nil {
				t.Fatalf("helm template accepted:\n%s", tc.values)
			}
			if !strings.Contains(stderr, "values don't meet the specifications of the schema") {
				t.Errorf("not refused by the schema: %s", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestSchemaCoversFerryConfig walks ferry's configuration types and the
// schema of `config` side by side: every option ferry knows must be in the
// schema (else helm would refuse a valid configuration), and the schema must
// allow no option ferry does not know (ferry would refuse it at start,
// after the install succeeded). Agent templates and Job templates are
// checked by ferry itself and left open in the schema.
func TestSchemaCoversFerryConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	root := resolve(t, schema, schema["properties"].(map[string]any)["config"])
	walkConfig(t, schema, "config", reflect.TypeFor[config.Config](), root)
}

// open types are ferry's own business: the schema leaves them open.
var openTypes = map[string]bool{
	"eci.Template":            true,
	"eci.ECI":                 true, // images.eci, checked as a template's
	"v1.ResourceRequirements": true, // images.resources
	"v1.JobSpec":              true,
}

func walkConfig(t *testing.T, schema map[string]any, path string, typ reflect.Type, node map[string]any) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Slice:
		items, ok := node["items"]
		if !ok {
			t.Errorf("%s: schema has no items for a list", path)
			return
		}
		walkConfig(t, schema, path+"[]", typ.Elem(), resolve(t, schema, items))
		return
	case reflect.Struct:
	default:
		return
	}
	if openTypes[typ.String()] {
		if node["additionalProperties"] == false {
			t.Errorf("%s (%s): the schema closes it, but ferry validates it; leave it open", path, typ)
		}
		return
	}
	if isLeafStruct(typ) {
		return
	}
	props, _ := node["properties"].(map[string]any)
	if node["additionalProperties"] != false {
		t.Errorf("%s: the schema allows any option; list ferry's (%s)", path, typ)
	}
	var fields []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields = append(fields, name)
		p, ok := props[name]
		if !ok {
			t.Errorf("%s.%s: ferry option missing from values.schema.json, so helm refuses it", path, name)
			continue
		}
		walkConfig(t, schema, path+"."+name, f.Type, resolve(t, schema, p))
	}
	var extra []string
	for name := range props {
		if !slices.Contains(fields, name) {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		t.Errorf("%s.%s: values.schema.json allows it, but ferry has no such option and would refuse to start", path, name)
	}
}

// isLeafStruct: struct types that are one value in YAML (durations).
func isLeafStruct(typ reflect.Type) bool {
	return typ == reflect.TypeFor[config.Duration]()
}

// resolve follows a local $ref.
func resolve(t *testing.T, schema map[string]any, node any) map[string]any {
	t.Helper()
	m, ok := node.(map[string]any)
	if !ok {
		t.Fatalf("schema node %v is not an object", node)
	}
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	cur := any(schema)
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[part]
	}
	if cur == nil {
		t.Fatalf("schema $ref %s resolves to nothing", ref)
	}
	return resolve(t, schema, cur)
}
