package kubeplugin

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// Names the plugin gives things in the pods it builds.
const (
	agentContainer  = "jnlp"
	workspaceVolume = "workspace-volume"
	// workspaceMount is where the plugin mounts the workspace volume in
	// every container (the agent's default working directory).
	workspaceMount = "/home/jenkins/agent"
)

// yamlPod is the pod the template's raw YAML describes, merged by the
// template's strategy: override takes the last document (the child's, if
// it has one), merge combines them all in order.
func yamlPod(t PodTemplate) (*corev1.Pod, string, error) {
	docs := t.yamlsResolved
	if len(docs) == 0 {
		return &corev1.Pod{}, "", nil
	}
	strategy, err := t.strategy()
	if err != nil {
		return nil, "", err
	}
	if strategy == "" {
		strategy = "override"
	}
	if strategy == "override" {
		docs = docs[len(docs)-1:]
	}
	pod := &corev1.Pod{}
	for i, d := range docs {
		var p corev1.Pod
		if err := yaml.Unmarshal([]byte(d), &p); err != nil {
			return nil, "", fmt.Errorf("yaml (document %d of the inheritance chain): %w", i+1, err)
		}
		pod = mergePods(pod, &p)
	}
	return pod, strategy, nil
}

// fieldsPod is the pod the template's own fields describe, as the plugin's
// PodTemplateBuilder makes it: every volume mounted in every container,
// the pod's variables in every container.
func fieldsPod(t PodTemplate, n *notes) *corev1.Pod {
	pod := &corev1.Pod{}
	pod.Spec.ServiceAccountName = t.ServiceAccount
	if t.ActiveDeadlineSeconds.set && t.ActiveDeadlineSeconds.v > 0 {
		pod.Spec.ActiveDeadlineSeconds = &t.ActiveDeadlineSeconds.v
	}
	if sel := strings.TrimSpace(t.NodeSelector); sel != "" {
		pod.Spec.NodeSelector = map[string]string{}
		for _, kv := range strings.Split(sel, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				n.add("nodeSelector %q: %q is not key=value; left out", t.NodeSelector, kv)
				continue
			}
			pod.Spec.NodeSelector[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	for _, s := range t.ImagePullSecrets {
		pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s.Name})
	}
	if len(t.Annotations) > 0 {
		pod.Annotations = map[string]string{}
		for _, a := range t.Annotations {
			if _, ok := pod.Annotations[a.Key]; !ok {
				pod.Annotations[a.Key] = a.Value
			}
		}
	}
	if t.RunAsUser.set || t.RunAsGroup.set {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
		if t.RunAsUser.set {
			pod.Spec.SecurityContext.RunAsUser = &t.RunAsUser.v
		}
		if t.RunAsGroup.set {
			pod.Spec.SecurityContext.RunAsGroup = &t.RunAsGroup.v
		}
	}
	if t.HostNetwork != nil && *t.HostNetwork {
		pod.Spec.HostNetwork = true
	}
	var mounts []corev1.VolumeMount
	for i, v := range t.Volumes {
		name := fmt.Sprintf("volume-%d", i)
		src, readOnly, ok := v.source(n)
		if !ok {
			continue
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: src})
		m := corev1.VolumeMount{Name: name, MountPath: v.mountPath(), ReadOnly: readOnly}
		if v.ConfigMapVolume != nil {
			m.SubPath = v.ConfigMapVolume.SubPath
		}
		mounts = append(mounts, m)
	}
	if ws := t.WorkspaceVolume; ws != nil {
		if src, ok := ws.source(n); ok {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: workspaceVolume, VolumeSource: src})
		}
	}
	for _, c := range t.Containers {
		ct := c.container(n)
		ct.Env = mergeEnv(envOf(t.EnvVars), ct.Env)
		ct.VolumeMounts = mergeMounts(slices.Clone(mounts), ct.VolumeMounts)
		pod.Spec.Containers = append(pod.Spec.Containers, ct)
	}
	if len(t.EnvVars) > 0 || len(mounts) > 0 {
		// The plugin gives the pod's variables and volumes to the agent
		// container it adds, too.
		if !slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == agentContainer }) {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: agentContainer, Env: envOf(t.EnvVars), VolumeMounts: slices.Clone(mounts)})
		}
	}
	return pod
}

func (c ContainerTemplate) container(n *notes) corev1.Container {
	out := corev1.Container{Name: c.Name, Image: c.Image, WorkingDir: c.WorkingDir}
	if c.AlwaysPullImage {
		out.ImagePullPolicy = corev1.PullAlways
	}
	var err error
	if out.Command, err = splitCommandLine(c.Command); err != nil {
		n.add("container %s: command %q: %v; left out", c.Name, c.Command, err)
	}
	if out.Args, err = splitCommandLine(c.Args); err != nil {
		n.add("container %s: args %q: %v; left out", c.Name, c.Args, err)
	}
	if c.TTYEnabled {
		out.TTY, out.Stdin = true, true
	}
	out.Resources = corev1.ResourceRequirements{}
	for _, r := range []struct {
		list  *corev1.ResourceList
		name  corev1.ResourceName
		value string
		field string
	}{
		{&out.Resources.Requests, corev1.ResourceCPU, c.ResourceRequestCPU, "resourceRequestCpu"},
		{&out.Resources.Requests, corev1.ResourceMemory, c.ResourceRequestMemory, "resourceRequestMemory"},
		{&out.Resources.Requests, corev1.ResourceEphemeralStorage, c.ResourceRequestEphemeralStorage, "resourceRequestEphemeralStorage"},
		{&out.Resources.Limits, corev1.ResourceCPU, c.ResourceLimitCPU, "resourceLimitCpu"},
		{&out.Resources.Limits, corev1.ResourceMemory, c.ResourceLimitMemory, "resourceLimitMemory"},
		{&out.Resources.Limits, corev1.ResourceEphemeralStorage, c.ResourceLimitEphemeralStorage, "resourceLimitEphemeralStorage"},
	} {
		if strings.TrimSpace(r.value) == "" {
			continue
		}
		q, err := resource.ParseQuantity(strings.TrimSpace(r.value))
		if err != nil {
			n.add("container %s: %s %q is not a quantity; left out", c.Name, r.field, r.value)
			continue
		}
		if *r.list == nil {
			*r.list = corev1.ResourceList{}
		}
		(*r.list)[r.name] = q
	}
	out.Env = envOf(c.EnvVars)
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort})
		if p.HostPort != 0 {
			n.add("container %s: hostPort %d of port %s left out: ECI gives a pod its own IP, and builds reach the port on localhost", c.Name, p.HostPort, p.Name)
		}
	}
	if c.Privileged {
		n.add("container %s: privileged left out: ECI does not run privileged containers (build images with kaniko, not Docker-in-Docker)", c.Name)
	}
	if c.RunAsUser.set || c.RunAsGroup.set {
		out.SecurityContext = &corev1.SecurityContext{}
		if c.RunAsUser.set {
			out.SecurityContext.RunAsUser = &c.RunAsUser.v
		}
		if c.RunAsGroup.set {
			out.SecurityContext.RunAsGroup = &c.RunAsGroup.v
		}
	}
	if c.LivenessProbe != nil {
		n.add("container %s: livenessProbe left out: ferry restarts no container (an agent pod runs one build and goes)", c.Name)
	}
	if c.Shell != "" {
		n.add("container %s: shell %q left out: it is for the plugin's container() step", c.Name, c.Shell)
	}
	return out
}

func envOf(vars []EnvVar) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range vars {
		switch {
		case e.EnvVar != nil:
			out = append(out, corev1.EnvVar{Name: e.EnvVar.Key, Value: e.EnvVar.Value})
		case e.SecretEnvVar != nil:
			s := e.SecretEnvVar
			ref := &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: s.SecretName}, Key: s.SecretKey}
			if s.Optional {
				ref.Optional = &s.Optional
			}
			out = append(out, corev1.EnvVar{Name: s.Key, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: ref}})
		}
	}
	return out
}

func (v PodVolume) source(n *notes) (corev1.VolumeSource, bool, bool) {
	switch {
	case v.EmptyDirVolume != nil:
		return emptyDir(v.EmptyDirVolume.Memory), false, true
	case v.SecretVolume != nil:
		src := &corev1.SecretVolumeSource{SecretName: v.SecretVolume.SecretName}
		if v.SecretVolume.Optional {
			src.Optional = &v.SecretVolume.Optional
		}
		if m := v.SecretVolume.DefaultMode; m != "" {
			var mode int32
			if _, err := fmt.Sscanf(m, "%o", &mode); err == nil {
				src.DefaultMode = &mode
			} else {
				n.add("secretVolume %s: defaultMode %q is not an octal mode; left out", v.SecretVolume.SecretName, m)
			}
		}
		return corev1.VolumeSource{Secret: src}, false, true
	case v.ConfigMapVolume != nil:
		src := &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: v.ConfigMapVolume.ConfigMapName}}
		if v.ConfigMapVolume.Optional {
			src.Optional = &v.ConfigMapVolume.Optional
		}
		return corev1.VolumeSource{ConfigMap: src}, false, true
	case v.PersistentVolumeClaim != nil:
		p := v.PersistentVolumeClaim
		return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p.ClaimName, ReadOnly: p.ReadOnly}}, p.ReadOnly, true
	case v.NFSVolume != nil:
		p := v.NFSVolume
		return corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: p.ServerAddress, Path: p.ServerPath, ReadOnly: p.ReadOnly}}, p.ReadOnly, true
	case v.HostPathVolume != nil:
		n.add("hostPathVolume %s at %s left out: ECI has no host to mount; use a persistentVolumeClaim (NAS) or an emptyDir", v.HostPathVolume.HostPath, v.HostPathVolume.MountPath)
	case v.GenericEphemeralVolume != nil:
		g := v.GenericEphemeralVolume
		return ephemeral(g.AccessModes, g.RequestsSize, g.StorageClassName, n), false, true
	default:
		n.add("a volume of a kind the importer does not know was left out")
	}
	return corev1.VolumeSource{}, false, false
}

func (w WorkspaceVolume) source(n *notes) (corev1.VolumeSource, bool) {
	switch {
	case w.EmptyDirWorkspaceVolume != nil:
		return emptyDir(w.EmptyDirWorkspaceVolume.Memory), true
	case w.PersistentVolumeClaimWorkspaceVolume != nil:
		p := w.PersistentVolumeClaimWorkspaceVolume
		n.add("workspaceVolume: the claim %s is shared by every agent of the template; ECI mounts it (NAS) but builds running at once share one workspace", p.ClaimName)
		return corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p.ClaimName, ReadOnly: p.ReadOnly}}, true
	case w.NFSWorkspaceVolume != nil:
		p := w.NFSWorkspaceVolume
		return corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: p.ServerAddress, Path: p.ServerPath, ReadOnly: p.ReadOnly}}, true
	case w.HostPathWorkspaceVolume != nil:
		n.add("workspaceVolume hostPath %s left out: ECI has no host to mount; the workspace is an emptyDir", w.HostPathWorkspaceVolume.HostPath)
	case w.DynamicPVC != nil:
		d := w.DynamicPVC
		n.add("workspaceVolume dynamicPVC became a generic ephemeral volume: a claim made with the pod and deleted with it, as the plugin's dynamic PVC is")
		return ephemeral(d.AccessModes, d.RequestsSize, d.StorageClassName, n), true
	case w.GenericEphemeralVolume != nil:
		g := w.GenericEphemeralVolume
		return ephemeral(g.AccessModes, g.RequestsSize, g.StorageClassName, n), true
	}
	return corev1.VolumeSource{}, false
}

func emptyDir(memory bool) corev1.VolumeSource {
	e := &corev1.EmptyDirVolumeSource{}
	if memory {
		e.Medium = corev1.StorageMediumMemory
	}
	return corev1.VolumeSource{EmptyDir: e}
}

func ephemeral(modes, size, class string, n *notes) corev1.VolumeSource {
	spec := corev1.PersistentVolumeClaimSpec{}
	for _, m := range strings.FieldsFunc(modes, func(r rune) bool { return r == ',' || r == ' ' }) {
		spec.AccessModes = append(spec.AccessModes, corev1.PersistentVolumeAccessMode(m))
	}
	if len(spec.AccessModes) == 0 {
		spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	if size == "" {
		size = "10Gi"
	} else if !strings.ContainsAny(size, "KMGTPEi") {
		size += "Gi" // the plugin reads a bare number as GiB
	}
	q, err := resource.ParseQuantity(size)
	if err != nil {
		n.add("volume size %q is not a quantity; 10Gi used", size)
		q = resource.MustParse("10Gi")
	}
	spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: q}
	if class != "" {
		spec.StorageClassName = &class
	}
	return corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: spec}}}
}

// mergePods is the plugin's PodTemplateUtils.combine(Pod parent, Pod
// template) for the fields ferry can carry: the child wins field by field,
// containers are merged by name, volumes by name, maps by key.
func mergePods(parent, child *corev1.Pod) *corev1.Pod {
	out := parent.DeepCopy()
	c := child.DeepCopy()
	out.Labels = mergeMap(out.Labels, c.Labels)
	out.Annotations = mergeMap(out.Annotations, c.Annotations)
	s, cs := &out.Spec, &c.Spec
	s.NodeSelector = mergeMap(s.NodeSelector, cs.NodeSelector)
	setStr(&s.ServiceAccountName, cs.ServiceAccountName)
	setPtr(&s.AutomountServiceAccountToken, cs.AutomountServiceAccountToken)
	setPtr(&s.ActiveDeadlineSeconds, cs.ActiveDeadlineSeconds)
	setPtr(&s.TerminationGracePeriodSeconds, cs.TerminationGracePeriodSeconds)
	setPtr(&s.SecurityContext, cs.SecurityContext)
	setPtr(&s.Affinity, cs.Affinity)
	s.HostNetwork = s.HostNetwork || cs.HostNetwork
	setStr(&s.SchedulerName, cs.SchedulerName)
	setStr(&s.PriorityClassName, cs.PriorityClassName)
	setPtr(&s.RuntimeClassName, cs.RuntimeClassName)
	setPtr(&s.DNSConfig, cs.DNSConfig)
	setStr(&s.DNSPolicy, cs.DNSPolicy)
	s.HostAliases = append(s.HostAliases, cs.HostAliases...)
	s.TopologySpreadConstraints = append(s.TopologySpreadConstraints, cs.TopologySpreadConstraints...)
	s.InitContainers = mergeByName(s.InitContainers, cs.InitContainers, func(x corev1.Container) string { return x.Name }, mergeContainer)
	for _, t := range cs.Tolerations {
		if !slices.ContainsFunc(s.Tolerations, func(o corev1.Toleration) bool { return o.MatchToleration(&t) }) {
			s.Tolerations = append(s.Tolerations, t)
		}
	}
	for _, p := range cs.ImagePullSecrets {
		if !slices.Contains(s.ImagePullSecrets, p) {
			s.ImagePullSecrets = append(s.ImagePullSecrets, p)
		}
	}
	s.Volumes = mergeByName(s.Volumes, cs.Volumes, func(v corev1.Volume) string { return v.Name }, func(_, v corev1.Volume) corev1.Volume { return v })
	s.Containers = mergeByName(s.Containers, cs.Containers, func(x corev1.Container) string { return x.Name }, mergeContainer)
	return out
}

func mergeContainer(p, c corev1.Container) corev1.Container {
	out := p
	setStr(&out.Image, c.Image)
	setStr(&out.ImagePullPolicy, c.ImagePullPolicy)
	setList(&out.Command, c.Command)
	setList(&out.Args, c.Args)
	setStr(&out.WorkingDir, c.WorkingDir)
	setPtr(&out.SecurityContext, c.SecurityContext)
	setPtr(&out.ReadinessProbe, c.ReadinessProbe)
	setPtr(&out.LivenessProbe, c.LivenessProbe)
	out.TTY, out.Stdin = out.TTY || c.TTY, out.Stdin || c.Stdin
	out.Env = mergeEnv(out.Env, c.Env)
	out.EnvFrom = append(out.EnvFrom, c.EnvFrom...)
	out.VolumeMounts = mergeMounts(out.VolumeMounts, c.VolumeMounts)
	out.Ports = mergeByName(out.Ports, c.Ports, func(x corev1.ContainerPort) string { return fmt.Sprint(x.Name, x.ContainerPort) }, func(_, x corev1.ContainerPort) corev1.ContainerPort { return x })
	out.Resources.Requests = mergeMap(out.Resources.Requests, c.Resources.Requests)
	out.Resources.Limits = mergeMap(out.Resources.Limits, c.Resources.Limits)
	return out
}

func mergeEnv(p, c []corev1.EnvVar) []corev1.EnvVar {
	return mergeByName(p, c, func(e corev1.EnvVar) string { return e.Name }, func(_, e corev1.EnvVar) corev1.EnvVar { return e })
}

func mergeMounts(p, c []corev1.VolumeMount) []corev1.VolumeMount {
	return mergeByName(p, c, func(m corev1.VolumeMount) string { return m.MountPath }, func(_, m corev1.VolumeMount) corev1.VolumeMount { return m })
}

func mergeByName[T any](parent, child []T, key func(T) string, merge func(p, c T) T) []T {
	out := slices.Clone(parent)
	for _, c := range child {
		if i := slices.IndexFunc(out, func(p T) bool { return key(p) == key(c) }); i >= 0 {
			out[i] = merge(out[i], c)
		} else {
			out = append(out, c)
		}
	}
	return out
}

func mergeMap[K comparable, V any](p, c map[K]V) map[K]V {
	if len(p) == 0 && len(c) == 0 {
		return nil
	}
	out := maps.Clone(p)
	if out == nil {
		out = map[K]V{}
	}
	maps.Copy(out, c)
	return out
}

// setStr, setPtr and setList let a child's value win where it sets one.
func setStr[S ~string](dst *S, v S) {
	if v != "" {
		*dst = v
	}
}

func setPtr[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

func setList[T any](dst *[]T, v []T) {
	if len(v) > 0 {
		*dst = v
	}
}
