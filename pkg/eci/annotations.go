package eci

import (
	"fmt"
	"strconv"
	"strings"
)

// SetAnnotation reads one of the k8s.aliyun.com/ annotations that ECI
// settings render to back into e, for importing pod specs written by hand.
// It reports false for a key that is not one of them.
func (e *ECI) SetAnnotation(key, value string) (bool, error) {
	list := func() []string {
		var out []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	boolean := func(dst **bool) error {
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", key, value)
		}
		*dst = &b
		return nil
	}
	switch key {
	case annotationSpecs:
		e.Specs = list()
	case annotationSpotStrategy:
		e.SpotStrategy = value
	case annotationSpotPrice:
		e.SpotPriceLimit = Price(value)
	case annotationSpotDuration:
		n, err := strconv.Atoi(value)
		if err != nil {
			return true, fmt.Errorf("%s: %q is not a number of hours", key, value)
		}
		e.SpotDuration = &n
	case annotationSpotFallback:
		return true, boolean(&e.SpotFallback)
	case annotationAutoIMC:
		return true, boolean(&e.AutoImageCache)
	case annotationIMCID:
		e.ImageCacheID = value
	case annotationVSwitch:
		e.VSwitches = list()
	case annotationSchedule:
		e.ScheduleStrategy = value
	case annotationSecurityGroup:
		e.SecurityGroup = value
	case annotationRAMRole:
		e.RAMRoleName = value
	case annotationExtraStorage:
		e.ExtraEphemeralStorage = value
	case annotationFailStrategy:
		e.FailStrategy = value
	case annotationACRInstance:
		e.ACRInstanceID = value
	case annotationWithEIP:
		return true, boolean(&e.WithEIP)
	default:
		return false, nil
	}
	return true, nil
}

// Annotations returns the k8s.aliyun.com/ annotations of the settings, for
// pods ferry makes that are not agents (image builds).
func (e ECI) Annotations() map[string]string { return e.annotations() }
