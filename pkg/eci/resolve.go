package eci

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Resolve merges every template over the chain of templates it inherits
// from, applies the defaults and validates the result. It reports every
// problem at once: templates without a name or with a name used twice, an
// unknown parent, an inheritance cycle, invalid fields and a Jenkins label
// served by two templates. The map is keyed by template name.
func Resolve(templates []Template) (map[string]Template, error) {
	var errs []error
	byName := make(map[string]Template, len(templates))
	for i, t := range templates {
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("templates[%d].name: must be set, e.g. linux", i))
		case hasKey(byName, t.Name):
			errs = append(errs, fmt.Errorf("templates[%d].name: %q is used by another template; names must be unique", i, t.Name))
		default:
			byName[t.Name] = t
		}
	}
	r := resolver{byName: byName, done: map[string]Template{}, failed: map[string]bool{}}
	for _, t := range templates {
		if t.Name == "" || r.done[t.Name].Name != "" || r.failed[t.Name] {
			continue
		}
		if err := r.resolve(t.Name, nil); err != nil {
			errs = append(errs, err)
		}
	}
	out := make(map[string]Template, len(r.done))
	servedBy := map[string]string{}
	for _, t := range templates {
		m, ok := r.done[t.Name]
		if !ok || hasKey(out, t.Name) {
			continue
		}
		m = m.WithDefaults()
		for _, err := range unjoin(m.Validate()) {
			errs = append(errs, fmt.Errorf("template %q: %w", t.Name, err))
		}
		for _, l := range m.Labels {
			if other, dup := servedBy[l]; dup {
				errs = append(errs, fmt.Errorf("template %q: labels: %q is already served by template %q; a label must lead to one template", t.Name, l, other))
				continue
			}
			servedBy[l] = t.Name
		}
		out[t.Name] = m
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

type resolver struct {
	byName map[string]Template
	done   map[string]Template
	failed map[string]bool
}

// resolve merges name over its ancestors; chain holds the names being
// resolved below it, to detect cycles.
func (r *resolver) resolve(name string, chain []string) error {
	t := r.byName[name]
	if t.Inherits == "" {
		r.done[name] = t.clone()
		return nil
	}
	chain = append(chain, name)
	if i := slices.Index(chain, t.Inherits); i >= 0 {
		for _, n := range chain[i:] {
			r.failed[n] = true
		}
		return fmt.Errorf("template %q: inherits: %q closes the cycle %s -> %s; remove one of these inherits", name, t.Inherits, strings.Join(chain[i:], " -> "), t.Inherits)
	}
	parent, ok := r.byName[t.Inherits]
	if !ok {
		r.failed[name] = true
		return fmt.Errorf("template %q: inherits: %q is not a template (known: %s)", name, t.Inherits, strings.Join(slices.Sorted(maps.Keys(r.byName)), ", "))
	}
	if r.failed[parent.Name] {
		r.failed[name] = true
		return nil // the parent's own error says it
	}
	if _, ok := r.done[parent.Name]; !ok {
		if err := r.resolve(parent.Name, chain); err != nil {
			r.failed[name] = true
			return err
		}
		if r.failed[parent.Name] {
			r.failed[name] = true
			return nil
		}
	}
	r.done[name] = Merge(r.done[parent.Name], t)
	return nil
}

// Merge returns child merged over parent by the rules described on
// Template. Name, Inherits and Labels come from the child alone.
func Merge(parent, child Template) Template {
	out := parent.clone()
	c := child.clone()
	out.Name, out.Inherits, out.Labels, out.WarmPool = c.Name, c.Inherits, c.Labels, c.WarmPool

	setStr(&out.Image, c.Image)
	setStr(&out.ImagePullPolicy, c.ImagePullPolicy)
	setStr(&out.ServiceAccountName, c.ServiceAccountName)
	setStr(&out.WorkDir, c.WorkDir)
	setList(&out.ImagePullSecrets, c.ImagePullSecrets)
	setList(&out.Tolerations, c.Tolerations)
	setList(&out.Fallbacks, c.Fallbacks)
	out.Resources.Requests = mergeMap(out.Resources.Requests, c.Resources.Requests)
	out.Resources.Limits = mergeMap(out.Resources.Limits, c.Resources.Limits)
	setList(&out.Resources.Claims, c.Resources.Claims)
	out.Env = mergeKeyed(out.Env, c.Env, func(e corev1.EnvVar) string { return e.Name })
	out.Volumes = mergeKeyed(out.Volumes, c.Volumes, func(v Volume) string { return v.Name })
	out.VolumeMounts = mergeKeyed(out.VolumeMounts, c.VolumeMounts, func(m corev1.VolumeMount) string { return m.MountPath })
	out.NodeSelector = mergeMap(out.NodeSelector, c.NodeSelector)
	out.PodLabels = mergeMap(out.PodLabels, c.PodLabels)
	out.PodAnnotations = mergeMap(out.PodAnnotations, c.PodAnnotations)
	setPtr(&out.VirtualNode, c.VirtualNode)
	setPtr(&out.AutomountServiceAccountToken, c.AutomountServiceAccountToken)
	out.Sidecars = mergeKeyed(out.Sidecars, c.Sidecars, func(s Sidecar) string { return s.Name })

	s, cs := &out.Security, c.Security
	setPtr(&s.RunAsUser, cs.RunAsUser)
	setPtr(&s.RunAsGroup, cs.RunAsGroup)
	setPtr(&s.FSGroup, cs.FSGroup)
	setPtr(&s.RunAsNonRoot, cs.RunAsNonRoot)
	setPtr(&s.ReadOnlyRootFilesystem, cs.ReadOnlyRootFilesystem)
	setList(&s.AddCapabilities, cs.AddCapabilities)

	for _, d := range []struct{ dst, src *Duration }{
		{&out.PendingTimeout, &c.PendingTimeout},
		{&out.ConnectTimeout, &c.ConnectTimeout},
		{&out.ActiveDeadline, &c.ActiveDeadline},
		{&out.TerminationGracePeriod, &c.TerminationGracePeriod},
		{&out.Retry.Backoff, &c.Retry.Backoff},
		{&out.Retry.MaxBackoff, &c.Retry.MaxBackoff},
	} {
		if d.src.Duration != 0 {
			*d.dst = *d.src
		}
	}
	if c.MaxAgents != 0 {
		out.MaxAgents = c.MaxAgents
	}
	if c.Retry.MaxAttempts != 0 {
		out.Retry.MaxAttempts = c.Retry.MaxAttempts
	}

	e, ce := &out.ECI, c.ECI
	setList(&e.Specs, ce.Specs)
	setStr(&e.SpotStrategy, ce.SpotStrategy)
	setStr(&e.SpotPriceLimit, ce.SpotPriceLimit)
	setPtr(&e.SpotDuration, ce.SpotDuration)
	setPtr(&e.SpotFallback, ce.SpotFallback)
	setPtr(&e.AutoImageCache, ce.AutoImageCache)
	setStr(&e.ImageCacheID, ce.ImageCacheID)
	setList(&e.VSwitches, ce.VSwitches)
	setStr(&e.ScheduleStrategy, ce.ScheduleStrategy)
	setStr(&e.SecurityGroup, ce.SecurityGroup)
	setStr(&e.RAMRoleName, ce.RAMRoleName)
	setStr(&e.ExtraEphemeralStorage, ce.ExtraEphemeralStorage)
	setStr(&e.FailStrategy, ce.FailStrategy)
	setStr(&e.ACRInstanceID, ce.ACRInstanceID)
	setPtr(&e.WithEIP, ce.WithEIP)
	return out
}

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
	if v != nil {
		*dst = v
	}
}

func mergeMap[K comparable, V any](parent, child map[K]V) map[K]V {
	if child == nil {
		return parent
	}
	if parent == nil {
		return child
	}
	maps.Copy(parent, child)
	return parent
}

// mergeKeyed keeps the parent's order, replaces entries the child redefines
// in place and appends the child's new ones.
func mergeKeyed[T any](parent, child []T, key func(T) string) []T {
	if child == nil {
		return parent
	}
	out := slices.Clone(parent)
	for _, c := range child {
		i := slices.IndexFunc(out, func(p T) bool { return key(p) == key(c) })
		if i >= 0 {
			out[i] = c
		} else {
			out = append(out, c)
		}
	}
	return out
}

// unjoin splits an errors.Join result into its errors.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // looking at this very value, not its chain
		return j.Unwrap()
	}
	return []error{err}
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}
