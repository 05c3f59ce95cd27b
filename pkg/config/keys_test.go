package config

import (
	"reflect"
	"strings"
)

// jsonKeys lists the YAML key of every field in v's type, recursively.
func jsonKeys(v any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			out = append(out, name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			// Kubernetes' own types (resources, env, tolerations…) are
			// documented by Kubernetes; the example shows them in use.
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) && !strings.HasPrefix(ft.PkgPath(), "k8s.io/") {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeOf(v))
	return out
}
