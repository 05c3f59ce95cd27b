package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/ferryci/ferry/pkg/config"
)

// fullValues is the checked-in values file that turns every feature on.
func fullValues(t testing.TB) string { return filepath.Join(chartDir(t), "ci", "full-values.yaml") }

// renderCase is one way of installing the chart, with what it must give.
type renderCase struct {
	name   string
	values []string
	extra  []string
	// want
	replicas      int32
	port          int32
	image         string
	agentsNS      string
	rbac          map[string][]string // namespace → ferry's parts getting their rights there (rbac_test.go)
	serviceMon    bool
	ingressPaths  []string
	antiAffinity  string // soft or hard
	serviceAcct   string
	pdbMin        *intstr.IntOrString
	pdbMaxUnavail *intstr.IntOrString
}

func renderCases(t testing.TB) []renderCase {
	one := intstr.FromInt32(1)
	two := intstr.FromInt32(2)
	return []renderCase{
		{
			name: "defaults", replicas: 3, port: 8080, image: "ferryci/ferry:" + appVersion(t),
			// Neither the provisioner nor the promoter is on: no rights.
			agentsNS: "ferry-agents", rbac: map[string][]string{},
			antiAffinity: "soft", serviceAcct: "ferry", pdbMaxUnavail: &one,
		},
		{
			name: "full", values: []string{fullValues(t)}, extra: []string{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"},
			replicas: 4, port: 8081,
			image:    "registry.example.com/platform/ferry@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			agentsNS: "ci-agents",
			// web-dr has a kubeconfig context: another cluster, no RBAC
			// here; web-extra is in rbac.extraNamespaces.
			rbac: map[string][]string{
				"ci-agents": {partAgents},
				"web-test":  {partPromotion}, "web-prod": {partPromotion},
				"web-extra":      {partAgents, partPromotion},
				releaseNamespace: {partLease},
			},
			serviceMon:   true,
			ingressPaths: []string{"/api/v1", "/hooks"},
			antiAffinity: "hard", serviceAcct: "ferry-controller", pdbMin: &two,
		},
	}
}

func appVersion(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatalf("read Chart.yaml: %v", err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml: no appVersion (%v)", err)
	}
	return c.AppVersion
}

func TestLint(t *testing.T) {
	cases := []struct {
		name   string
		values []string
	}{
		{"defaults", nil},
		{"full", []string{fullValues(t)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir(t)}
			for _, v := range tc.values {
				args = append(args, "--values", v)
			}
			out, stderr, err := helm(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s%s", err, out, stderr)
			}
			// helm lint reports a template's fail() only as an INFO line.
			for _, bad := range []string{"[WARNING]", "[ERROR]", "Fail:"} {
				if strings.Contains(out+stderr, bad) {
					t.Errorf("helm lint printed %s:\n%s%s", bad, out, stderr)
				}
			}
		})
	}
}

func TestRender(t *testing.T) {
	for _, tc := range renderCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.values, tc.extra...)
			golden(t, tc.name+".golden.yaml", m.raw)
			dep := one[*appsv1.Deployment](t, m)
			pod := dep.Spec.Template
			podLabels := labels.Set(pod.Labels)

			t.Run("replicas", func(t *testing.T) {
				if dep.Spec.Replicas == nil || *dep.Spec.Replicas != tc.replicas {
					t.Errorf("replicas = %v, want %d", dep.Spec.Replicas, tc.replicas)
				}
				sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
				if err != nil || !sel.Matches(podLabels) {
					t.Errorf("Deployment selector %v does not match its pods' labels %v (%v)", dep.Spec.Selector, pod.Labels, err)
				}
				if s := dep.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable == nil || s.MaxUnavailable.IntValue() != 0 {
					t.Errorf("rolling update maxUnavailable = %v, want 0: a rollout must never take a webhook receiver away first", s)
				}
			})

			c := container(t, pod.Spec)
			t.Run("image and command", func(t *testing.T) {
				if c.Image != tc.image {
					t.Errorf("image = %q, want %q", c.Image, tc.image)
				}
				want := []string{"serve", "--config", "/etc/ferry/config/ferry.yaml"}
				if !slices.Equal(c.Args, want) || len(c.Command) != 0 {
					t.Errorf("command %q args %q, want args %q", c.Command, c.Args, want)
				}
				if !mounted(pod.Spec, c, "/etc/ferry/config", func(v corev1.Volume) bool {
					return v.ConfigMap != nil && v.ConfigMap.Name == one[*corev1.ConfigMap](t, m).Name
				}) {
					t.Errorf("the ConfigMap is not mounted at /etc/ferry/config")
				}
			})

			t.Run("leader election identity", func(t *testing.T) {
				for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
					e := envVar(c, name)
					if e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
						t.Errorf("env %s = %+v, want the downward API field %s", name, e, path)
					}
				}
				if pod.Spec.Hostname != "" {
					t.Errorf("pod hostname fixed to %q: every replica must keep its own (ferry's Lease identity is the hostname)", pod.Spec.Hostname)
				}
				cfg := ferryConfig(t, m)
				if !cfg.Agents.LeaderElection.Enabled || !cfg.Promotion.LeaderElection.Enabled {
					t.Errorf("leader election: provisioner %v, promoter %v; both must be on with %d replicas",
						cfg.Agents.LeaderElection.Enabled, cfg.Promotion.LeaderElection.Enabled, tc.replicas)
				}
				if cfg.Promotion.LeaseNamespace != releaseNamespace {
					t.Errorf("promotion.leaseNamespace = %q, want the release namespace %q", cfg.Promotion.LeaseNamespace, releaseNamespace)
				}
				if cfg.Agents.Namespace != tc.agentsNS {
					t.Errorf("agents.namespace = %q, want %q", cfg.Agents.Namespace, tc.agentsNS)
				}
				if cfg.BackendName() != "redis" {
					t.Errorf("store backend = %s, want redis: replicas share the queue through it", cfg.BackendName())
				}
			})

			t.Run("probes and port", func(t *testing.T) {
				if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != tc.port {
					t.Fatalf("ports = %+v, want one named http on %d", c.Ports, tc.port)
				}
				if got := ferryConfig(t, m).Server.Listen; got != fmt.Sprintf(":%d", tc.port) {
					t.Errorf("server.listen = %q, want :%d (the probed port)", got, tc.port)
				}
				for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port != intstr.FromString("http") {
						t.Errorf("probe of %s = %+v, want GET %s on port http", name, p, name)
					}
				}
			})

			t.Run("security context", func(t *testing.T) {
				psc, sc := pod.Spec.SecurityContext, c.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
					t.Errorf("pod runAsNonRoot not true: %+v", psc)
				}
				if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("pod seccomp profile not RuntimeDefault: %+v", psc)
				}
				if sc == nil {
					t.Fatalf("container has no security context")
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("readOnlyRootFilesystem not true")
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("allowPrivilegeEscalation not false")
				}
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
					t.Errorf("capabilities = %+v, want drop [ALL] and nothing added", sc.Capabilities)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("resources = %+v, want cpu and memory requests and a memory limit", c.Resources)
				}
				if e := envVar(c, "GOMEMLIMIT"); e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil ||
					e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
					t.Errorf("GOMEMLIMIT = %+v, want the memory limit", e)
				}
			})

			t.Run("spread across nodes", func(t *testing.T) {
				hostname := false
				for _, tsc := range pod.Spec.TopologySpreadConstraints {
					sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
					if err != nil || !sel.Matches(podLabels) {
						t.Errorf("topology spread on %s selects %v, not this release's pods", tsc.TopologyKey, tsc.LabelSelector)
					}
					if !slices.Contains(tsc.MatchLabelKeys, "pod-template-hash") {
						t.Errorf("topology spread on %s lacks matchLabelKeys pod-template-hash: a rollout's surge would skew it", tsc.TopologyKey)
					}
					hostname = hostname || tsc.TopologyKey == corev1.LabelHostname
				}
				if !hostname {
					t.Errorf("no topology spread across %s", corev1.LabelHostname)
				}
				aa := pod.Spec.Affinity
				if aa == nil || aa.PodAntiAffinity == nil {
					t.Fatalf("no pod anti-affinity")
				}
				var term *corev1.PodAffinityTerm
				switch tc.antiAffinity {
				case "soft":
					if p := aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution; len(p) == 1 {
						term = &p[0].PodAffinityTerm
					}
				case "hard":
					if r := aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution; len(r) == 1 {
						term = &r[0]
					}
				}
				if term == nil || term.TopologyKey != corev1.LabelHostname {
					t.Fatalf("pod anti-affinity %+v, want one %s term on %s", aa.PodAntiAffinity, tc.antiAffinity, corev1.LabelHostname)
				}
				if sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector); err != nil || !sel.Matches(podLabels) {
					t.Errorf("anti-affinity selects %v, not this release's pods", term.LabelSelector)
				}
			})

			t.Run("disruption budget", func(t *testing.T) {
				pdb := one[*policyv1.PodDisruptionBudget](t, m)
				sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				if err != nil || !sel.Matches(podLabels) {
					t.Errorf("PDB selects %v, not the pods", pdb.Spec.Selector)
				}
				if !sameIntOrString(pdb.Spec.MinAvailable, tc.pdbMin) || !sameIntOrString(pdb.Spec.MaxUnavailable, tc.pdbMaxUnavail) {
					t.Errorf("PDB minAvailable %v maxUnavailable %v, want %v and %v", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable, tc.pdbMin, tc.pdbMaxUnavail)
				}
			})

			t.Run("service", func(t *testing.T) {
				svc := one[*corev1.Service](t, m)
				if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
					t.Errorf("Service selects %v, not the pods", svc.Spec.Selector)
				}
				var names []string
				for _, p := range svc.Spec.Ports {
					names = append(names, p.Name)
					if p.TargetPort != intstr.FromString("http") {
						t.Errorf("Service port %s targets %v, want the container port http", p.Name, p.TargetPort)
					}
				}
				if !slices.Equal(names, []string{"http", "metrics"}) {
					t.Errorf("Service ports %v, want http and metrics", names)
				}
			})

			t.Run("service account", func(t *testing.T) {
				if pod.Spec.ServiceAccountName != tc.serviceAcct {
					t.Errorf("pods run as %q, want %q", pod.Spec.ServiceAccountName, tc.serviceAcct)
				}
				sa := one[*corev1.ServiceAccount](t, m)
				if sa.Name != tc.serviceAcct {
					t.Errorf("ServiceAccount %q, want %q", sa.Name, tc.serviceAcct)
				}
			})

			t.Run("agents namespace", func(t *testing.T) {
				ns := one[*corev1.Namespace](t, m)
				if ns.Name != tc.agentsNS {
					t.Errorf("created namespace %q, want %q", ns.Name, tc.agentsNS)
				}
			})

			t.Run("ingress and service monitor", func(t *testing.T) {
				var paths []string
				for _, ing := range all[*networkingv1.Ingress](m) {
					for _, r := range ing.Spec.Rules {
						for _, p := range r.HTTP.Paths {
							paths = append(paths, p.Path)
						}
					}
				}
				sort.Strings(paths)
				if !slices.Equal(paths, tc.ingressPaths) {
					t.Errorf("Ingress paths %v, want %v", paths, tc.ingressPaths)
				}
				for _, p := range paths {
					if p == "/" || strings.HasPrefix("/metrics", p) || strings.HasPrefix("/healthz", p) {
						t.Errorf("Ingress path %s exposes /metrics or the probes", p)
					}
				}
				var mons []*unstructured.Unstructured
				for _, u := range all[*unstructured.Unstructured](m) {
					if u.GetKind() == "ServiceMonitor" {
						mons = append(mons, u)
					}
				}
				if got := len(mons) == 1; got != tc.serviceMon {
					t.Fatalf("%d ServiceMonitors rendered, want one: %v", len(mons), tc.serviceMon)
				}
				if tc.serviceMon {
					port, _, _ := unstructured.NestedSlice(mons[0].Object, "spec", "endpoints")
					if len(port) != 1 || port[0].(map[string]any)["port"] != "metrics" {
						t.Errorf("ServiceMonitor endpoints %v, want the Service port metrics", port)
					}
				}
			})

			t.Run("names fit", func(t *testing.T) {
				for _, o := range m.objects {
					acc, err := metaOf(o)
					if err != nil {
						t.Fatal(err)
					}
					if errs := validation.IsDNS1123Label(acc.GetName()); len(errs) > 0 && !strings.Contains(acc.GetName(), ".") {
						t.Errorf("%s %s: %v", o.GetObjectKind().GroupVersionKind().Kind, acc.GetName(), errs)
					}
					for k, v := range acc.GetLabels() {
						if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
							t.Errorf("label %s=%q of %s: %v", k, v, acc.GetName(), errs)
						}
					}
				}
			})
		})
	}
}

// TestLongNames renders with a release name at helm's limit (53) and
// checks that every name the chart makes stays a valid DNS label.
func TestLongNames(t *testing.T) {
	rel := strings.Repeat("r", 53)
	out, stderr, err := helm(t, "template", rel, chartDir(t), "--namespace", strings.Repeat("n", 63), "--values", fullValues(t),
		"--set", "fullnameOverride=", "--set", "serviceAccount.name=")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	m := decode(t, out)
	seen := map[string]string{}
	for _, o := range m.objects {
		acc, err := metaOf(o)
		if err != nil {
			t.Fatal(err)
		}
		kind := o.GetObjectKind().GroupVersionKind().Kind
		if errs := validation.IsDNS1123Label(acc.GetName()); len(errs) > 0 {
			t.Errorf("%s %q: %v", kind, acc.GetName(), errs)
		}
		key := kind + " " + acc.GetNamespace() + "/" + acc.GetName()
		if prev, dup := seen[key]; dup {
			t.Errorf("two objects named %s (%s)", key, prev)
		}
		seen[key] = key
	}
}

// TestNoSecretInConfigMap renders the chart with every secret set and
// checks that none of them reaches a ConfigMap (or an env value), while
// the Secret holds each one and the Deployment reads each from it.
func TestNoSecretInConfigMap(t *testing.T) {
	m := render(t, []string{fullValues(t)})
	secrets := map[string]string{
		"jenkins-api-token":       "jenkins-token-value",
		"github-webhook-secrets":  "github-secret-old,github-secret-new",
		"github-token":            "github-token-value",
		"gitlab-webhook-tokens":   "gitlab-hook-value",
		"gitlab-token":            "gitlab-token-value",
		"redis-password":          "redis-password-value",
		"redis-sentinel-password": "redis-sentinel-password-value",
		"promotion-api-token":     "promotion-token-value",
	}
	data := secretData(t, m)
	dep := one[*appsv1.Deployment](t, m)
	c := container(t, dep.Spec.Template.Spec)
	for key, value := range secrets {
		t.Run(key, func(t *testing.T) {
			if data[key] != value {
				t.Errorf("Secret key %s = %q, want %q", key, data[key], value)
			}
			for _, cm := range all[*corev1.ConfigMap](m) {
				for file, text := range cm.Data {
					for _, part := range strings.Split(value, ",") {
						if strings.Contains(text, part) {
							t.Errorf("ConfigMap %s (%s) contains the secret of %s", cm.Name, file, key)
						}
					}
				}
			}
			secret := one[*corev1.Secret](t, m).Name
			found := false
			for _, e := range c.Env {
				if strings.Contains(e.Value, strings.Split(value, ",")[0]) {
					t.Errorf("env %s carries the secret of %s as a plain value", e.Name, key)
				}
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Key == key {
					found = r.SecretKeyRef.Name == secret
				}
			}
			if !found {
				t.Errorf("no env variable reads key %s of the chart's Secret", key)
			}
		})
	}
}

// TestRefusesSecretsInConfig: a secret put in config would land in the
// ConfigMap; the chart refuses it and says where it belongs.
func TestRefusesSecretsInConfig(t *testing.T) {
	cases := []struct{ set, want string }{
		{"config.jenkins.apiToken=t0ken", "config.jenkins.apiToken: a secret does not belong in config"},
		{"config.github.token=t0ken", "set secrets.githubToken"},
		{"config.github.webhookSecrets={s3cret}", "config.github.webhookSecrets: a secret does not belong in config"},
		{"config.gitlab.token=t0ken", "config.gitlab.token"},
		{"config.gitlab.webhookTokens={s3cret}", "secrets.gitlabWebhookTokens"},
		{"config.store.redis.password=pw", "config.store.redis.password: a secret does not belong in config"},
		{"config.store.redis.sentinel.password=pw", "set secrets.redisSentinelPassword"},
		{"config.promotion.apiToken=t0ken", "key promotion-api-token of secrets.existingSecret"},
		{"config.ui.sessionKey=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "set secrets.uiSessionKey"},
	}
	for _, tc := range cases {
		t.Run(tc.set, func(t *testing.T) {
			_, stderr, err := renderErr(t, nil, "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template accepted --set %s", tc.set)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("error %q does not say %q", stderr, tc.want)
			}
		})
	}
}

// TestChecksums: a change of the configuration or of the chart's Secret
// changes the pod template (ferry reads both once, at start), and nothing
// else does.
func TestChecksums(t *testing.T) {
	base := podAnnotations(t, render(t, nil))
	for _, k := range []string{"checksum/config", "checksum/secret"} {
		if len(base[k]) != 64 {
			t.Fatalf("annotation %s = %q, want a sha256", k, base[k])
		}
	}
	cases := []struct {
		name           string
		set            []string
		config, secret bool // whether each checksum must change
	}{
		{"config", []string{"config.telemetry.logLevel=debug"}, true, false},
		{"pipeline", []string{"config.pipelines[0].name=app", "config.pipelines[0].repo=acme/app", "config.pipelines[0].job=app"}, true, false},
		{"container port", []string{"containerPort=9000"}, true, false},
		{"secret", []string{"secrets.githubToken=new-token"}, false, true},
		{"webhook secret", []string{"secrets.githubWebhookSecrets={a,b}"}, false, true},
		{"replicas only", []string{"replicaCount=5"}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			got := podAnnotations(t, render(t, nil, args...))
			if changed := got["checksum/config"] != base["checksum/config"]; changed != tc.config {
				t.Errorf("checksum/config changed = %v, want %v", changed, tc.config)
			}
			if changed := got["checksum/secret"] != base["checksum/secret"]; changed != tc.secret {
				t.Errorf("checksum/secret changed = %v, want %v", changed, tc.secret)
			}
		})
	}
	t.Run("existing secret", func(t *testing.T) {
		got := podAnnotations(t, render(t, nil, "--set", "secrets.existingSecret=mine"))
		if _, ok := got["checksum/secret"]; ok {
			t.Errorf("checksum/secret set for a Secret the chart does not render")
		}
		m := render(t, nil, "--set", "secrets.existingSecret=mine")
		if n := len(all[*corev1.Secret](m)); n != 0 {
			t.Errorf("chart rendered %d Secrets with secrets.existingSecret set", n)
		}
		for _, e := range container(t, one[*appsv1.Deployment](t, m).Spec.Template.Spec).Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
				if r.SecretKeyRef.Name != "mine" || r.SecretKeyRef.Optional == nil || !*r.SecretKeyRef.Optional {
					t.Errorf("env %s reads %+v, want an optional key of Secret mine", e.Name, r.SecretKeyRef)
				}
			}
		}
	})
}

// TestConfigPassesFerryValidation loads the rendered ferry.yaml with
// ferry's own loader, with the environment the Deployment gives it.
func TestConfigPassesFerryValidation(t *testing.T) {
	for _, tc := range renderCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			m := render(t, tc.values, tc.extra...)
			cfg, err := loadRendered(t, m)
			if err != nil {
				t.Fatalf("ferry refuses the rendered configuration: %v", err)
			}
			if tc.name != "full" {
				return
			}
			// The secrets reached ferry through the environment.
			if cfg.Jenkins.APIToken != "jenkins-token-value" || cfg.Store.Redis.Password != "redis-password-value" ||
				cfg.Promotion.APIToken != "promotion-token-value" || cfg.GitLab.Token != "gitlab-token-value" {
				t.Errorf("secrets from the environment did not reach the configuration")
			}
			if want := []string{"github-secret-old", "github-secret-new"}; !slices.Equal(cfg.GitHub.WebhookSecrets, want) {
				t.Errorf("github.webhookSecrets = %q, want %q", cfg.GitHub.WebhookSecrets, want)
			}
			if cfg.Promotion.DockerConfig != "/etc/ferry/registry/.dockerconfigjson" {
				t.Errorf("promotion.dockerConfig = %q, want the mounted registry Secret", cfg.Promotion.DockerConfig)
			}
			dep := one[*appsv1.Deployment](t, m)
			if !mounted(dep.Spec.Template.Spec, container(t, dep.Spec.Template.Spec), "/etc/ferry/registry", func(v corev1.Volume) bool {
				return v.Secret != nil && v.Secret.SecretName == "ferry-registry"
			}) {
				t.Errorf("registry Secret ferry-registry is not mounted at /etc/ferry/registry")
			}
			if len(cfg.Agents.Templates) != 2 || !cfg.Agents.Enabled || len(cfg.Promotion.Apps[0].Environments) != 4 ||
				len(cfg.Promotion.Apps[0].Environments[1].Canary.Steps) != 4 || len(cfg.Promotion.Apps[0].Environments[2].KnativeServices) != 1 {
				t.Errorf("agents or promotion lost on the way: %+v", cfg.Agents)
			}
		})
	}
}

// TestExampleConfigPassesThrough puts every option of examples/ferry.yaml
// into the chart: the schema must accept all of them, and the rendered file
// must mean the same to ferry, except for what the chart owns.
func TestExampleConfigPassesThrough(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var example map[string]any
	if err := yaml.Unmarshal(data, &example); err != nil {
		t.Fatalf("parse examples/ferry.yaml: %v", err)
	}
	// The chart owns server.listen (from containerPort).
	server := example["server"].(map[string]any)
	listen := server["listen"]
	delete(server, "listen")
	values, err := yaml.Marshal(map[string]any{"config": example})
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := renderErr(t, []string{writeValues(t, string(values))},
		"--set", "containerPort="+strings.TrimPrefix(listen.(string), ":"))
	if err != nil {
		t.Fatalf("the chart refuses examples/ferry.yaml as config: %v\n%s", err, stderr)
	}
	want, err := config.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse([]byte(configMapFile(t, decode(t, out))))
	if err != nil {
		t.Fatalf("ferry cannot parse the rendered config: %v", err)
	}
	// examples/ferry.yaml names its lease namespace, so the chart keeps it.
	gotY, _ := yaml.Marshal(got)
	wantY, _ := yaml.Marshal(want)
	if string(gotY) != string(wantY) {
		t.Errorf("the rendered configuration differs from examples/ferry.yaml:\n%s", lineDiff(string(wantY), string(gotY)))
	}
}

// TestExampleHelmValues: examples/helm-values.yaml, the ready starting
// point for ACK, passes lint, renders, and ferry accepts the configuration
// it renders once the Secret it names holds every key.
func TestExampleHelmValues(t *testing.T) {
	values := filepath.Join(repoRoot(t), "examples", "helm-values.yaml")
	if out, stderr, err := helm(t, "lint", "--strict", chartDir(t), "-f", values); err != nil || strings.Contains(out, "Fail:") {
		t.Fatalf("helm lint: %v\n%s%s", err, out, stderr)
	}
	m := render(t, []string{values})
	if n := len(all[*corev1.Secret](m)); n != 0 {
		t.Errorf("%d Secrets rendered, want none (the example names an existing one)", n)
	}
	keys := map[string]string{}
	for _, k := range []string{"jenkins-api-token", "github-webhook-secrets", "github-token", "gitlab-webhook-tokens",
		"gitlab-token", "redis-password", "redis-sentinel-password", "promotion-api-token"} {
		keys[k] = "example-" + k
	}
	cfg, err := loadRenderedWith(t, m, keys)
	if err != nil {
		t.Fatalf("ferry refuses the example's configuration: %v", err)
	}
	if !cfg.Agents.Enabled || !cfg.Promotion.Enabled || len(cfg.Pipelines) == 0 {
		t.Errorf("the example lost its provisioner, promoter or pipelines: agents %v, promotion %v, %d pipelines",
			cfg.Agents.Enabled, cfg.Promotion.Enabled, len(cfg.Pipelines))
	}
	if got := bindingNamespaces(m, chartRole(t, m, "agents").Name); !slices.Equal(got, []string{"ferry-agents"}) {
		t.Errorf("the provisioner's rights are bound in %v, want the agents namespace", got)
	}
	if got := bindingNamespaces(m, chartRole(t, m, "promotion").Name); !slices.Equal(got, []string{"web-prod", "web-test"}) {
		t.Errorf("the promoter's rights are bound in %v, want both environments' namespaces", got)
	}
}

// TestRefusesMemoryStoreWithReplicas: replicas cannot share the in-memory
// store; one replica may use it.
func TestRefusesMemoryStoreWithReplicas(t *testing.T) {
	cases := []struct {
		name string
		set  []string
		ok   bool
	}{
		{"no redis, 3 replicas", []string{"config.store.redis.addr="}, false},
		{"memory backend, 2 replicas", []string{"config.store.backend=memory", "replicaCount=2"}, false},
		{"memory backend, 1 replica", []string{"config.store.backend=memory", "replicaCount=1"}, true},
		{"redis, 3 replicas", nil, true},
		{"sentinel, 3 replicas", []string{"config.store.redis.addr=", "config.store.redis.sentinel.masterName=mymaster", "config.store.redis.sentinel.addrs={s-0:26379}"}, true},
		{"cluster, 3 replicas", []string{"config.store.redis.addr=", "config.store.redis.prefix=ferry-{x}:", "config.store.redis.cluster.addrs={r-0:6379}"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, stderr, err := renderErr(t, nil, args...)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v\n%s", err, stderr)
			}
			if !tc.ok && (err == nil || !strings.Contains(stderr, "in-memory store, which replicas cannot share")) {
				t.Fatalf("got %v %q, want a refusal naming the in-memory store", err, stderr)
			}
		})
	}
}

func container(t testing.TB, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "ferry" {
		t.Fatalf("pod containers %d, want one named ferry", len(spec.Containers))
	}
	return spec.Containers[0]
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func mounted(spec corev1.PodSpec, c corev1.Container, path string, volume func(corev1.Volume) bool) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && volume(v) {
				return vm.ReadOnly && vm.SubPath == ""
			}
		}
	}
	return false
}

func sameIntOrString(a, b *intstr.IntOrString) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}

func podAnnotations(t testing.TB, m *manifest) map[string]string {
	t.Helper()
	return one[*appsv1.Deployment](t, m).Spec.Template.Annotations
}

func metaOf(o any) (metav1.Object, error) {
	acc, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", o)
	}
	return acc, nil
}

// configMapFile returns ferry.yaml of the chart's ConfigMap.
func configMapFile(t testing.TB, m *manifest) string {
	t.Helper()
	cm := one[*corev1.ConfigMap](t, m)
	text, ok := cm.Data["ferry.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no ferry.yaml", cm.Name)
	}
	return text
}

// ferryConfig parses the rendered configuration as ferry does (without
// validating or reading secrets).
func ferryConfig(t testing.TB, m *manifest) config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(configMapFile(t, m)))
	if err != nil {
		t.Fatalf("ferry cannot parse the rendered ferry.yaml: %v", err)
	}
	return cfg
}

// loadRendered runs ferry's loader on the rendered ferry.yaml with the
// environment the Deployment sets: plain values, and Secret keys looked up
// in the chart's Secret.
func loadRendered(t testing.TB, m *manifest) (config.Config, error) {
	t.Helper()
	return loadRenderedWith(t, m, secretData(t, m))
}

// loadRenderedWith is loadRendered with the Secret's keys given.
func loadRenderedWith(t testing.TB, m *manifest, data map[string]string) (config.Config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(file, []byte(configMapFile(t, m)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range container(t, one[*appsv1.Deployment](t, m).Spec.Template.Spec).Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			if v, ok := data[e.ValueFrom.SecretKeyRef.Key]; ok {
				env[e.Name] = v
			}
		}
	}
	return config.Load(config.Sources{File: file, Lookup: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
}

// TestToggles: what each switch adds or removes.
func TestToggles(t *testing.T) {
	cases := []struct {
		name       string
		set        []string
		present    []string // "Kind namespace/name"
		absent     []string // kinds
		saName     string
		namespace  bool // the agents Namespace is rendered
		noAffinity bool
	}{
		{
			name:    "agents in the release namespace",
			set:     []string{"config.agents.enabled=true", "config.agents.namespace=" + releaseNamespace},
			present: []string{"RoleBinding " + releaseNamespace + "/" + releaseNamespace + "-ferry-agents"},
			absent:  []string{"Namespace"}, saName: "ferry",
		},
		{
			name:   "no namespace creation",
			set:    []string{"config.agents.enabled=true", "agentsNamespace.create=false"},
			absent: []string{"Namespace"}, saName: "ferry",
			present: []string{"RoleBinding ferry-agents/" + releaseNamespace + "-ferry-agents"},
		},
		{
			name:   "no RBAC",
			set:    []string{"rbac.create=false"},
			absent: []string{"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}, saName: "ferry", namespace: true,
		},
		{
			name:   "existing service account",
			set:    []string{"serviceAccount.create=false", "serviceAccount.name=ci-bot"},
			absent: []string{"ServiceAccount"}, saName: "ci-bot", namespace: true,
		},
		{
			name:   "no disruption budget, no anti-affinity",
			set:    []string{"podDisruptionBudget.enabled=false", "podAntiAffinity="},
			absent: []string{"PodDisruptionBudget"}, saName: "ferry", namespace: true, noAffinity: true,
		},
		{
			name:   "service monitor without its API",
			set:    []string{"metrics.serviceMonitor.enabled=true"},
			absent: []string{"ServiceMonitor"}, saName: "ferry", namespace: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			m := render(t, nil, args...)
			got := kindsNamed(m)
			for _, p := range tc.present {
				if !slices.Contains(got, p) {
					t.Errorf("%s not rendered; rendered: %v", p, got)
				}
			}
			for _, kind := range tc.absent {
				for _, g := range got {
					if strings.HasPrefix(g, kind+" ") {
						t.Errorf("%s rendered", g)
					}
				}
			}
			dep := one[*appsv1.Deployment](t, m)
			if sa := dep.Spec.Template.Spec.ServiceAccountName; sa != tc.saName {
				t.Errorf("pods run as %q, want %q", sa, tc.saName)
			}
			for _, rb := range all[*rbacv1.RoleBinding](m) {
				for _, s := range rb.Subjects {
					if s.Name != tc.saName {
						t.Errorf("RoleBinding %s/%s binds %q, want %q", rb.Namespace, rb.Name, s.Name, tc.saName)
					}
				}
			}
			if n := len(all[*corev1.Namespace](m)); tc.namespace && n != 1 {
				t.Errorf("%d agents Namespaces rendered, want 1", n)
			}
			if tc.noAffinity && dep.Spec.Template.Spec.Affinity != nil {
				t.Errorf("affinity %+v rendered with podAntiAffinity empty", dep.Spec.Template.Spec.Affinity)
			}
		})
	}
}
