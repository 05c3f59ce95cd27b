package kubeplugin

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// defaultConnectTimeout is the plugin's slaveConnectTimeout when a template
// sets none (seconds).
const defaultConnectTimeout = 1000

// yamls returns the template's raw pod YAML documents, as the plugin's
// getYamls does: yaml if set, else yamls.
func (t PodTemplate) yamls() []string {
	if strings.TrimSpace(t.YAML) != "" {
		return []string{t.YAML}
	}
	return slices.DeleteFunc(slices.Clone(t.YAMLs), func(s string) bool { return strings.TrimSpace(s) == "" })
}

// unwrap resolves t's parents the way the plugin's PodTemplateUtils.unwrap
// does: the cloud's defaults template first, then each name of inheritFrom
// (space-separated) in order, each unwrapped itself, folded with combine,
// and t combined over the result. It returns the chain it followed.
func unwrap(t PodTemplate, defaults string, all map[string]PodTemplate, seen []string) (PodTemplate, []string, error) {
	if slices.Contains(seen, t.Name) {
		return PodTemplate{}, nil, fmt.Errorf("template %q inherits from itself: %s", t.Name, strings.Join(append(seen, t.Name), " → "))
	}
	seen = append(seen, t.Name)
	var names []string
	if defaults != "" && defaults != t.Name {
		names = append(names, defaults)
	}
	names = append(names, strings.Fields(t.InheritFrom)...)
	if len(names) == 0 {
		t.yamlsResolved = t.yamls()
		return t, nil, nil
	}
	var parent *PodTemplate
	var chain []string
	for _, n := range names {
		next, ok := all[n]
		if !ok {
			return PodTemplate{}, nil, fmt.Errorf("template %q inherits from %q, which the file does not define", t.Name, n)
		}
		// The plugin unwraps parents without the defaults template.
		u, sub, err := unwrap(next, "", all, seen)
		if err != nil {
			return PodTemplate{}, nil, err
		}
		chain = append(append(chain, sub...), n)
		if parent == nil {
			parent = &u
		} else {
			c := combine(*parent, u)
			parent = &c
		}
	}
	t.yamlsResolved = t.yamls()
	return combine(*parent, t), chain, nil
}

// combine is the plugin's PodTemplateUtils.combine(parent, template).
func combine(parent, t PodTemplate) PodTemplate {
	out := t
	out.Annotations = unionKV(t.Annotations, parent.Annotations)
	out.ImagePullSecrets = slices.Clone(parent.ImagePullSecrets)
	for _, s := range t.ImagePullSecrets {
		if !slices.Contains(out.ImagePullSecrets, s) {
			out.ImagePullSecrets = append(out.ImagePullSecrets, s)
		}
	}
	out.Containers = slices.Clone(parent.Containers)
	for _, c := range t.Containers {
		if i := slices.IndexFunc(out.Containers, func(p ContainerTemplate) bool { return p.Name == c.Name }); i >= 0 {
			out.Containers[i] = combineContainer(out.Containers[i], c)
		} else {
			out.Containers = append(out.Containers, c)
		}
	}
	out.Volumes = slices.Clone(parent.Volumes)
	for _, v := range t.Volumes {
		if i := slices.IndexFunc(out.Volumes, func(p PodVolume) bool { return p.mountPath() == v.mountPath() }); i >= 0 {
			out.Volumes[i] = v
		} else {
			out.Volumes = append(out.Volumes, v)
		}
	}
	if out.WorkspaceVolume == nil {
		out.WorkspaceVolume = parent.WorkspaceVolume
	}
	str := func(dst *string, p string) {
		if *dst == "" {
			*dst = p
		}
	}
	str(&out.Namespace, parent.Namespace)
	str(&out.NodeSelector, parent.NodeSelector)
	str(&out.ServiceAccount, parent.ServiceAccount)
	str(&out.SchedulerName, parent.SchedulerName)
	str(&out.NodeUsageMode, parent.NodeUsageMode)
	str(&out.SupplementalGroups, parent.SupplementalGroups)
	str(&out.AgentContainer, parent.AgentContainer)
	out.EnvVars = combineEnv(parent.EnvVars, t.EnvVars)
	if len(out.YAMLMergeStrategy) == 0 && parent.InheritYAMLMergeStrategy {
		out.YAMLMergeStrategy = parent.YAMLMergeStrategy
	}
	out.InheritYAMLMergeStrategy = parent.InheritYAMLMergeStrategy
	num := func(dst *number, p number, unset int64) {
		if !dst.set || dst.v == unset {
			*dst = p
		}
	}
	out.InstanceCap = firstNumber(t.InstanceCap, t.InstanceCapStr)
	num(&out.InstanceCap, firstNumber(parent.InstanceCap, parent.InstanceCapStr), math.MaxInt32)
	out.SlaveConnectTimeout = firstNumber(t.SlaveConnectTimeout, t.SlaveConnectStr)
	num(&out.SlaveConnectTimeout, firstNumber(parent.SlaveConnectTimeout, parent.SlaveConnectStr), defaultConnectTimeout)
	out.IdleMinutes = firstNumber(t.IdleMinutes, t.IdleMinutesStr)
	num(&out.IdleMinutes, firstNumber(parent.IdleMinutes, parent.IdleMinutesStr), 0)
	out.ActiveDeadlineSeconds = firstNumber(t.ActiveDeadlineSeconds, t.ActiveDeadlineStr)
	num(&out.ActiveDeadlineSeconds, firstNumber(parent.ActiveDeadlineSeconds, parent.ActiveDeadlineStr), 0)
	out.InstanceCapStr, out.SlaveConnectStr, out.IdleMinutesStr, out.ActiveDeadlineStr = number{}, number{}, number{}, number{}
	if !out.RunAsUser.set {
		out.RunAsUser = parent.RunAsUser
	}
	if !out.RunAsGroup.set {
		out.RunAsGroup = parent.RunAsGroup
	}
	if out.HostNetwork == nil {
		out.HostNetwork = parent.HostNetwork
	}
	if out.AgentInjection == nil {
		out.AgentInjection = parent.AgentInjection
	}
	out.yamlsResolved = append(slices.Clone(parent.yamlsResolved), t.yamlsResolved...)
	return out
}

// combineContainer is the plugin's combine of two container templates of
// the same name: each field the child leaves empty comes from the parent.
func combineContainer(parent, c ContainerTemplate) ContainerTemplate {
	out := c
	str := func(dst *string, p string) {
		if *dst == "" {
			*dst = p
		}
	}
	str(&out.Image, parent.Image)
	str(&out.Command, parent.Command)
	str(&out.Args, parent.Args)
	str(&out.WorkingDir, parent.WorkingDir)
	str(&out.Shell, parent.Shell)
	str(&out.ResourceRequestCPU, parent.ResourceRequestCPU)
	str(&out.ResourceRequestMemory, parent.ResourceRequestMemory)
	str(&out.ResourceRequestEphemeralStorage, parent.ResourceRequestEphemeralStorage)
	str(&out.ResourceLimitCPU, parent.ResourceLimitCPU)
	str(&out.ResourceLimitMemory, parent.ResourceLimitMemory)
	str(&out.ResourceLimitEphemeralStorage, parent.ResourceLimitEphemeralStorage)
	out.AlwaysPullImage = c.AlwaysPullImage || parent.AlwaysPullImage
	out.TTYEnabled = c.TTYEnabled || parent.TTYEnabled
	out.Privileged = c.Privileged || parent.Privileged
	if !out.RunAsUser.set {
		out.RunAsUser = parent.RunAsUser
	}
	if !out.RunAsGroup.set {
		out.RunAsGroup = parent.RunAsGroup
	}
	if out.LivenessProbe == nil {
		out.LivenessProbe = parent.LivenessProbe
	}
	out.EnvVars = combineEnv(parent.EnvVars, c.EnvVars)
	out.Ports = slices.Clone(parent.Ports)
	for _, p := range c.Ports {
		if i := slices.IndexFunc(out.Ports, func(o PortMapping) bool { return o.Name == p.Name }); i >= 0 {
			out.Ports[i] = p
		} else {
			out.Ports = append(out.Ports, p)
		}
	}
	return out
}

func (e EnvVar) key() string {
	switch {
	case e.EnvVar != nil:
		return e.EnvVar.Key
	case e.SecretEnvVar != nil:
		return e.SecretEnvVar.Key
	}
	return ""
}

func combineEnv(parent, child []EnvVar) []EnvVar {
	out := slices.Clone(parent)
	for _, e := range child {
		if i := slices.IndexFunc(out, func(o EnvVar) bool { return o.key() == e.key() }); i >= 0 {
			out[i] = e
		} else {
			out = append(out, e)
		}
	}
	return out
}

func unionKV(first, then []KeyValue) []KeyValue {
	out := slices.Clone(first)
	for _, kv := range then {
		if !slices.ContainsFunc(out, func(o KeyValue) bool { return o.Key == kv.Key }) {
			out = append(out, kv)
		}
	}
	return out
}

func (v PodVolume) mountPath() string {
	switch {
	case v.EmptyDirVolume != nil:
		return v.EmptyDirVolume.MountPath
	case v.SecretVolume != nil:
		return v.SecretVolume.MountPath
	case v.ConfigMapVolume != nil:
		return v.ConfigMapVolume.MountPath
	case v.PersistentVolumeClaim != nil:
		return v.PersistentVolumeClaim.MountPath
	case v.NFSVolume != nil:
		return v.NFSVolume.MountPath
	case v.HostPathVolume != nil:
		return v.HostPathVolume.MountPath
	case v.GenericEphemeralVolume != nil:
		return v.GenericEphemeralVolume.MountPath
	}
	return ""
}
