package kubeplugin

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/ferryci/ferry/pkg/eci"
)

// Imported is one plugin template turned into a ferry agent template.
type Imported struct {
	// Cloud and From name the plugin template.
	Cloud, From string
	// Chain lists the templates it inherited from, in the order applied.
	Chain []string
	// Strategy is the yaml merge strategy used ("" without yaml).
	Strategy string
	// Template is the ferry template, whole (no inherits).
	Template eci.Template
	// Notes say what was not carried over, or changed, and why.
	Notes []string
	// Invalid is ferry's validation of the result, nil when it is valid.
	Invalid error
}

// Result is what an import made of a file.
type Result struct {
	Templates []Imported
	// Skipped are plugin templates not written out (bases without labels),
	// each with the reason.
	Skipped []string
	// Notes concern every template.
	Notes []string
}

type notes []string

func (n *notes) add(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	if !slices.Contains(*n, s) {
		*n = append(*n, s)
	}
}

// Import reads a JCasC file (or the ConfigMap holding one) and converts
// every pod template with a label.
func Import(data []byte) (Result, error) {
	clouds, err := Parse(data)
	if err != nil {
		return Result{}, err
	}
	unknown, err := unknownFields(data)
	if err != nil {
		return Result{}, err
	}
	var res Result
	used := map[string]string{}
	for _, cloud := range clouds {
		all := map[string]PodTemplate{}
		for i, t := range cloud.Templates {
			if t.Name == "" {
				return Result{}, fmt.Errorf("cloud %q: templates[%d] has no name", cloud.Name, i)
			}
			if _, dup := all[t.Name]; dup {
				return Result{}, fmt.Errorf("cloud %q: two templates are named %q", cloud.Name, t.Name)
			}
			all[t.Name] = t
		}
		for _, t := range cloud.Templates {
			if strings.TrimSpace(t.Label) == "" {
				res.Skipped = append(res.Skipped, fmt.Sprintf("%s (cloud %s): no label, so only a base for others; its settings are in the templates that inherit it", t.Name, cloud.Name))
				continue
			}
			im, err := convert(cloud, t, all)
			if err != nil {
				return Result{}, fmt.Errorf("cloud %q: %w", cloud.Name, err)
			}
			for _, f := range unknown[t.Name] {
				im.Notes = append(im.Notes, fmt.Sprintf("%s: not a field the importer knows; left out", f))
			}
			if prev, ok := used[im.Template.Name]; ok {
				return Result{}, fmt.Errorf("templates %q and %q both become ferry template %q; rename one", prev, t.Name, im.Template.Name)
			}
			used[im.Template.Name] = t.Name
			res.Templates = append(res.Templates, im)
		}
	}
	res.Notes = []string{
		"Steps inside container('name') { } run in that container under the plugin; ferry runs every step in the agent container (jnlp). Put the tools into the agent image (FROM jenkins/inbound-agent, add them) or talk to a sidecar over localhost and the shared workspace.",
		"ferry sends every agent to ECI through the virtual nodes (virtualNode: true), with a read-only root filesystem, uid 1000 and no capabilities: a build that writes outside /home/jenkins and /tmp needs security.readOnlyRootFilesystem: false.",
		"Each agent takes exactly one build and goes; nothing is kept for reuse (idleMinutes, podRetention).",
		"The plugin waits 1000 s for an agent to connect unless slaveConnectTimeout says otherwise; ferry waits connectTimeout (2m unless the template sets it).",
	}
	return res, nil
}

func convert(cloud Cloud, t PodTemplate, all map[string]PodTemplate) (Imported, error) {
	u, chain, err := unwrap(t, cloud.DefaultsProviderTemplate, all, nil)
	if err != nil {
		return Imported{}, err
	}
	var n notes
	im := Imported{Cloud: cloud.Name, From: t.Name, Chain: chain}
	if cloud.DefaultsProviderTemplate != "" && cloud.DefaultsProviderTemplate != t.Name {
		n.add("the cloud's defaultsProviderTemplate %q was applied first, as the plugin does, before any inheritFrom", cloud.DefaultsProviderTemplate)
	}
	yp, strategy, err := yamlPod(u)
	if err != nil {
		return Imported{}, fmt.Errorf("template %q: %w", t.Name, err)
	}
	im.Strategy = strategy
	if strategy == "override" && len(u.yamlsResolved) > 1 {
		n.add("yamlMergeStrategy override: only the last of %d yaml documents in the inheritance chain counts, as in the plugin", len(u.yamlsResolved))
	}
	pod := mergePods(yp, fieldsPod(u, &n))
	im.Template = toTemplate(pod, u, cloud, &n)
	for _, w := range im.Template.Warnings() {
		n.add("%s", strings.TrimPrefix(w, "template "+im.Template.Name+": "))
	}
	im.Notes = n
	im.Invalid = im.Template.Validate()
	return im, nil
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsName makes a plugin template name a ferry template name.
func dnsName(s string) string {
	out := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(out) > 63 {
		out = strings.TrimRight(out[:63], "-")
	}
	if out == "" {
		out = "imported"
	}
	return out
}

func toTemplate(pod *corev1.Pod, t PodTemplate, cloud Cloud, n *notes) eci.Template {
	et := eci.Template{Name: dnsName(t.Name), Labels: strings.Fields(t.Label)}
	if et.Name != t.Name {
		n.add("renamed from %q: a ferry template name is a DNS label", t.Name)
	}
	agentName := agentContainer
	if t.AgentContainer != "" && t.AgentContainer != agentContainer {
		agentName = t.AgentContainer
		n.add("agentContainer %q: its settings became the agent container's (ferry's agent container is always jnlp)", t.AgentContainer)
	}
	if t.AgentInjection != nil && *t.AgentInjection {
		n.add("agentInjection left out: ferry's agent image must be built on jenkins/inbound-agent")
	}
	s := pod.Spec
	for _, c := range s.Containers {
		if c.Name == agentName {
			agent(&et, c, n)
			continue
		}
		et.Sidecars = append(et.Sidecars, sidecar(c, n))
	}
	if !slices.ContainsFunc(s.Containers, func(c corev1.Container) bool { return c.Name == agentName && c.Image != "" }) {
		n.add("no jnlp image: ferry's default agent image %s (the plugin would have added jenkins/inbound-agent too)", eci.DefaultImage)
	}

	for _, v := range s.Volumes {
		switch {
		case v.Name == workspaceVolume:
			if v.EmptyDir == nil || v.EmptyDir.Medium != "" {
				et.Volumes = append(et.Volumes, eci.Volume{Name: eci.VolumeWorkspace, VolumeSource: v.VolumeSource})
			}
		case v.Name == eci.VolumeWorkspace || v.Name == eci.VolumeTmp:
			n.add("volume %q replaces ferry's own %s volume of that name", v.Name, v.Name)
			et.Volumes = append(et.Volumes, eci.Volume{Name: v.Name, VolumeSource: v.VolumeSource})
		case v.HostPath != nil:
			n.add("hostPath volume %s left out: ECI has no host to mount", v.Name)
		default:
			et.Volumes = append(et.Volumes, eci.Volume{Name: v.Name, VolumeSource: v.VolumeSource})
		}
	}
	if s.HostNetwork {
		n.add("hostNetwork left out: ECI gives every pod its own network")
	}
	for k, v := range s.NodeSelector {
		if k == eci.VirtualNodeLabel && v == eci.VirtualNodeValue {
			continue // ferry adds it
		}
		if et.NodeSelector == nil {
			et.NodeSelector = map[string]string{}
		}
		et.NodeSelector[k] = v
	}
	for _, tol := range s.Tolerations {
		if tol.Key == eci.VirtualNodeTaintKey {
			continue // ferry adds it
		}
		et.Tolerations = append(et.Tolerations, tol)
	}
	et.ServiceAccountName = s.ServiceAccountName
	switch {
	case s.AutomountServiceAccountToken != nil:
		et.AutomountServiceAccountToken = s.AutomountServiceAccountToken
	case s.ServiceAccountName != "":
		et.AutomountServiceAccountToken = ptr(true)
		n.add("serviceAccount %s: its token is mounted (automountServiceAccountToken: true), as Kubernetes did for the plugin's pods; ferry mounts none unless asked", s.ServiceAccountName)
	}
	for _, p := range s.ImagePullSecrets {
		et.ImagePullSecrets = append(et.ImagePullSecrets, p.Name)
	}
	for k, v := range pod.Labels {
		if k == "jenkins" || strings.HasPrefix(k, "jenkins/") || k == eci.LabelECI {
			continue
		}
		if et.PodLabels == nil {
			et.PodLabels = map[string]string{}
		}
		et.PodLabels[k] = v
	}
	for _, k := range sortedKeys(pod.Annotations) {
		v := pod.Annotations[k]
		ok, err := et.ECI.SetAnnotation(k, v)
		switch {
		case err != nil:
			n.add("annotation %v; left out", err)
		case ok:
		default:
			if et.PodAnnotations == nil {
				et.PodAnnotations = map[string]string{}
			}
			et.PodAnnotations[k] = v
		}
	}
	if sc := s.SecurityContext; sc != nil {
		setIf(&et.Security.RunAsUser, sc.RunAsUser)
		setIf(&et.Security.RunAsGroup, sc.RunAsGroup)
		setIf(&et.Security.FSGroup, sc.FSGroup)
		setIf(&et.Security.RunAsNonRoot, sc.RunAsNonRoot)
		if len(sc.SupplementalGroups) > 0 || sc.SELinuxOptions != nil || len(sc.Sysctls) > 0 {
			n.add("securityContext: supplementalGroups, seLinuxOptions and sysctls left out")
		}
	}
	if t.SupplementalGroups != "" {
		n.add("supplementalGroups %q left out", t.SupplementalGroups)
	}
	if d := s.ActiveDeadlineSeconds; d != nil && *d > 0 {
		et.ActiveDeadline = eci.Duration{Duration: time.Duration(*d) * time.Second}
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g > 0 {
		et.TerminationGracePeriod = eci.Duration{Duration: time.Duration(*g) * time.Second}
	}
	for _, f := range []struct {
		field string
		set   bool
	}{
		{"affinity", s.Affinity != nil}, {"initContainers", len(s.InitContainers) > 0}, {"schedulerName", s.SchedulerName != ""},
		{"priorityClassName", s.PriorityClassName != ""}, {"runtimeClassName", s.RuntimeClassName != nil}, {"dnsConfig", s.DNSConfig != nil},
		{"dnsPolicy", s.DNSPolicy != ""}, {"hostAliases", len(s.HostAliases) > 0}, {"topologySpreadConstraints", len(s.TopologySpreadConstraints) > 0},
	} {
		if f.set {
			n.add("spec.%s left out: ferry's templates have no such setting (ECI places pods by vSwitch, see eci.vSwitches)", f.field)
		}
	}
	if c := t.InstanceCap; c.set && c.v > 0 && c.v < math.MaxInt32 {
		et.MaxAgents = int(c.v)
	}
	if c := t.SlaveConnectTimeout; c.set && c.v > 0 && c.v != defaultConnectTimeout {
		et.ConnectTimeout = eci.Duration{Duration: time.Duration(c.v) * time.Second}
	}
	if m := t.IdleMinutes; m.set && m.v > 0 {
		n.add("idleMinutes %d left out: the plugin kept an idle agent for the next build; ferry gives each agent one build, and a warm pool of ready agents is the way to start builds at once", m.v)
	}
	if r := strings.TrimSpace(string(t.PodRetention)); r != "" && r != "null" && !strings.Contains(r, "never") && !strings.Contains(r, "default") {
		n.add("podRetention %s left out: ferry deletes every agent pod when its build ends (its failure is kept on the commit status and in events)", r)
	}
	if t.NodeUsageMode == "NORMAL" {
		n.add("nodeUsageMode NORMAL left out: ferry serves only builds whose label a template lists")
	}
	if t.Namespace != "" && t.Namespace != cloud.Namespace {
		n.add("namespace %q left out: ferry runs every agent in agents.namespace", t.Namespace)
	}
	return et
}

func agent(et *eci.Template, c corev1.Container, n *notes) {
	et.Image = c.Image
	et.ImagePullPolicy = c.ImagePullPolicy
	if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
		et.Resources = c.Resources
	} else {
		n.add("the agent container sets no resources: ferry's default, %s, which is ECI's default instance", "2 vCPU and 4 GiB")
	}
	for _, e := range c.Env {
		if slices.Contains(eci.ReservedEnv, e.Name) {
			n.add("env %s of the agent container left out: ferry sets it", e.Name)
			continue
		}
		et.Env = append(et.Env, e)
	}
	if c.WorkingDir != "" && c.WorkingDir != workspaceMount {
		et.WorkDir = c.WorkingDir
	}
	if len(c.Command) > 0 || len(c.Args) > 0 {
		n.add("command and args of the agent container left out: ferry runs the inbound agent's own entrypoint")
	}
	for _, m := range c.VolumeMounts {
		if m.Name != workspaceVolume {
			et.VolumeMounts = append(et.VolumeMounts, m)
		}
	}
	if sc := c.SecurityContext; sc != nil {
		setIf(&et.Security.RunAsUser, sc.RunAsUser)
		setIf(&et.Security.RunAsGroup, sc.RunAsGroup)
		setIf(&et.Security.RunAsNonRoot, sc.RunAsNonRoot)
		setIf(&et.Security.ReadOnlyRootFilesystem, sc.ReadOnlyRootFilesystem)
	}
	if c.TTY {
		n.add("ttyEnabled of the agent container left out")
	}
}

func sidecar(c corev1.Container, n *notes) eci.Sidecar {
	sc := eci.Sidecar{
		Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy, Command: c.Command, Args: c.Args,
		WorkingDir: c.WorkingDir, TTY: c.TTY, Stdin: c.Stdin, Env: c.Env, Ports: c.Ports, Resources: c.Resources,
	}
	if sc.WorkingDir == workspaceMount {
		sc.WorkingDir = ""
	}
	for _, m := range c.VolumeMounts {
		if m.Name != workspaceVolume {
			sc.VolumeMounts = append(sc.VolumeMounts, m)
		}
	}
	if p := c.ReadinessProbe; p != nil {
		sc.ReadinessProbe = &eci.Probe{Exec: p.Exec, HTTPGet: p.HTTPGet, TCPSocket: p.TCPSocket,
			InitialDelaySeconds: p.InitialDelaySeconds, PeriodSeconds: p.PeriodSeconds, TimeoutSeconds: p.TimeoutSeconds, FailureThreshold: p.FailureThreshold}
	}
	if c.LivenessProbe != nil {
		n.add("container %s: livenessProbe left out: ferry restarts no container (an agent pod runs one build and goes)", c.Name)
	}
	if s := c.SecurityContext; s != nil {
		sc.Security.RunAsUser, sc.Security.RunAsGroup = s.RunAsUser, s.RunAsGroup
		sc.Security.RunAsNonRoot, sc.Security.ReadOnlyRootFilesystem = s.RunAsNonRoot, s.ReadOnlyRootFilesystem
		if s.Privileged != nil && *s.Privileged {
			n.add("container %s: privileged left out: ECI does not run privileged containers (build images with kaniko, not Docker-in-Docker)", c.Name)
		}
		if s.Capabilities != nil {
			sc.Security.AddCapabilities = s.Capabilities.Add
		}
	}
	if len(c.Resources.Requests) == 0 && len(c.Resources.Limits) == 0 {
		n.add("container %s sets no resources: it shares the agent's part of the ECI instance", c.Name)
	}
	if waitsForSteps(c) {
		n.add("container %s only waits (%s) for the plugin's container('%s') steps: it was kept as a sidecar, but ferry runs steps in the agent container; put %s's tools into the agent image", c.Name, strings.Join(append(slices.Clone(c.Command), c.Args...), " "), c.Name, c.Image)
	}
	return sc
}

// waitsForSteps tells the plugin's idiom of a tool container: a command
// that blocks forever (cat with a tty, sleep) so container() can exec in it.
func waitsForSteps(c corev1.Container) bool {
	words := append(slices.Clone(c.Command), c.Args...)
	for _, w := range words {
		f := strings.Fields(w)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "cat", "/bin/cat":
			return c.TTY || c.Stdin
		case "sleep", "/bin/sleep":
			return true
		}
	}
	return len(words) == 0 && c.TTY
}

func setIf[T any](dst **T, v *T) {
	if v != nil {
		x := *v
		*dst = &x
	}
}

func ptr[T any](v T) *T { return &v }

// knownTemplateFields are the JCasC fields of a pod template the importer
// reads; any other is reported.
var knownTemplateFields = func() map[string]bool {
	m := map[string]bool{"id": true, "label": true}
	for _, f := range jsonFields(PodTemplate{}) {
		m[f] = true
	}
	return m
}()

func jsonFields(v any) []string {
	b, _ := json.Marshal(v)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// unknownFields lists, per template name, the fields the importer does not
// read, so nothing is left out silently.
func unknownFields(data []byte) (map[string][]string, error) {
	var raw any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	var docs []any
	if m, ok := raw.(map[string]any); ok && m["kind"] == "ConfigMap" {
		d, _ := m["data"].(map[string]any)
		for _, k := range sortedKeys(d) {
			s, _ := d[k].(string)
			var doc any
			if err := yaml.Unmarshal([]byte(s), &doc); err == nil {
				docs = append(docs, doc)
			}
		}
	} else {
		docs = append(docs, raw)
	}
	for _, doc := range docs {
		for _, t := range templatesOf(doc) {
			name, _ := t["name"].(string)
			for _, k := range sortedKeys(t) {
				if !knownTemplateFields[k] {
					out[name] = append(out[name], k)
				}
			}
		}
	}
	return out, nil
}

func templatesOf(doc any) []map[string]any {
	var out []map[string]any
	root, _ := doc.(map[string]any)
	j, _ := root["jenkins"].(map[string]any)
	clouds, _ := j["clouds"].([]any)
	for _, c := range clouds {
		cm, _ := c.(map[string]any)
		k, _ := cm["kubernetes"].(map[string]any)
		ts, _ := k["templates"].([]any)
		for _, t := range ts {
			if m, ok := t.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}
