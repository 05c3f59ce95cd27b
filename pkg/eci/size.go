package eci

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Spec is an ECI instance size: vCPUs and GiB of memory.
type Spec struct {
	CPU    float64
	Memory float64
}

// String writes the spec the way eci-use-specs takes it, e.g. 2-4Gi.
func (s Spec) String() string {
	return strconv.FormatFloat(s.CPU, 'f', -1, 64) + "-" + strconv.FormatFloat(s.Memory, 'f', -1, 64) + "Gi"
}

// Specs are the vCPU-memory sizes ECI sells in every region, smallest
// first. A pod asking for a size between them gets (and is billed for) the
// next one up: ECI rounds vCPU and memory up together.
var Specs = func() []Spec {
	rows := []struct {
		cpu float64
		mem []float64
	}{
		{0.25, []float64{0.5, 1}},
		{0.5, []float64{1, 2}},
		{1, []float64{2, 4, 8}},
		{2, []float64{1, 2, 4, 8, 16}},
		{4, []float64{2, 4, 8, 16, 32}},
		{8, []float64{4, 8, 16, 32, 64}},
		{12, []float64{12, 24, 48, 96}},
		{16, []float64{16, 32, 64, 128}},
		{24, []float64{24, 48, 96, 192}},
		{32, []float64{32, 64, 128, 256}},
		{52, []float64{96, 192, 384}},
		{64, []float64{128, 256, 512}},
	}
	var out []Spec
	for _, r := range rows {
		for _, m := range r.mem {
			out = append(out, Spec{r.cpu, m})
		}
	}
	return out
}()

// RoundUp returns the smallest spec with at least want's vCPUs and memory,
// and false when no spec is that large.
func RoundUp(want Spec) (Spec, bool) {
	for _, s := range Specs {
		if s.CPU >= want.CPU && s.Memory >= want.Memory {
			return s, true
		}
	}
	return Spec{}, false
}

// PodSize is what ECI sizes an agent pod of t from: the sum over its
// containers of each one's limit, or its request where it sets no limit.
// Containers that set neither share the instance.
func (t Template) PodSize() Spec {
	t = t.WithDefaults()
	sum := containerSize(t.Resources)
	for _, s := range t.Sidecars {
		c := containerSize(s.Resources)
		sum.CPU += c.CPU
		sum.Memory += c.Memory
	}
	return sum
}

func containerSize(r corev1.ResourceRequirements) Spec {
	get := func(name corev1.ResourceName) resource.Quantity {
		if q, ok := r.Limits[name]; ok {
			return q
		}
		return r.Requests[name]
	}
	cpu, mem := get(corev1.ResourceCPU), get(corev1.ResourceMemory)
	return Spec{CPU: float64(cpu.MilliValue()) / 1000, Memory: float64(mem.Value()) / (1 << 30)}
}

// firstSpec returns the first vCPU-memory spec of eci.specs, if any.
func (e ECI) firstSpec() (Spec, bool) {
	for _, s := range e.Specs {
		m := specVCPUMem.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		cpu, err1 := strconv.ParseFloat(m[1], 64)
		mem, err2 := strconv.ParseFloat(m[2], 64)
		if err1 == nil && err2 == nil {
			return Spec{cpu, mem}, true
		}
	}
	return Spec{}, false
}

// eciSize checks that the containers fit the largest ECI instance.
func (v *validator) eciSize(t Template) {
	if !*t.VirtualNode {
		return
	}
	size := t.PodSize()
	if _, ok := RoundUp(size); !ok {
		largest := Specs[len(Specs)-1]
		v.add("resources", "the containers add up to %s vCPU and %s GiB; no ECI instance is that large (at most %s vCPU and %s GiB): lower the agent's or the sidecars' resources",
			fmtNum(size.CPU), fmtNum(size.Memory), fmtNum(largest.CPU), fmtNum(largest.Memory))
	}
}

// Warnings lists what is valid but probably not meant, for `ferry
// check-config` and `ferry render-pod` to print: containers whose sum ECI
// rounds up to a larger (and dearer) spec, or that need more than the
// first spec eci.specs names.
func (t Template) Warnings() []string {
	t = t.WithDefaults()
	size := t.PodSize()
	if !*t.VirtualNode || (size.CPU == 0 && size.Memory == 0) {
		return nil
	}
	sum := fmt.Sprintf("template %s: the containers add up to %s vCPU and %s GiB", t.Name, fmtNum(size.CPU), fmtNum(size.Memory))
	if len(t.ECI.Specs) > 0 {
		if spec, ok := t.ECI.firstSpec(); ok && (size.CPU > spec.CPU || size.Memory > spec.Memory) {
			return []string{sum + ", more than eci.specs' first spec " + spec.String() + ": ECI cannot give the containers what they ask on it; list a larger spec first or lower the resources"}
		}
		return nil
	}
	up, ok := RoundUp(size)
	if !ok || up == size {
		return nil
	}
	return []string{sum + ", not an ECI spec; ECI rounds up to " + up.String() + " and bills for that: size the containers to a spec, or list eci.specs"}
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
