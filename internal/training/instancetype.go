package training

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
)

// DefaultInstanceType is the instance type of jobs that name none. An
// InstanceType object of this name replaces the built-in one.
const DefaultInstanceType = "defaultinstancetype"

// BuiltinDefault is the built-in defaultinstancetype, Azure ML's.
func BuiltinDefault() amlarcv1alpha1.InstanceTypeSpec {
	return amlarcv1alpha1.InstanceTypeSpec{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("2Gi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("2Gi"),
		},
	}}
}

// errInstanceTypeNotFound carries the message of a job whose instance type
// does not exist.
type errInstanceTypeNotFound struct{ msg string }

func (e errInstanceTypeNotFound) Error() string { return e.msg }

// resolveInstanceType finds name ("" meaning the default) among the
// cluster's InstanceType objects.
func resolveInstanceType(name string, objs []amlarcv1alpha1.InstanceType) (amlarcv1alpha1.InstanceTypeSpec, error) {
	if name == "" {
		name = DefaultInstanceType
	}
	known := []string{}
	for i := range objs {
		if objs[i].Name == name {
			return *objs[i].Spec.DeepCopy(), nil
		}
		known = append(known, objs[i].Name)
	}
	if name == DefaultInstanceType {
		return BuiltinDefault(), nil
	}
	if !slices.Contains(known, DefaultInstanceType) {
		known = append(known, DefaultInstanceType)
	}
	slices.Sort(known)
	return amlarcv1alpha1.InstanceTypeSpec{}, errInstanceTypeNotFound{fmt.Sprintf("instance type %q not found; the cluster has %s", name, strings.Join(known, ", "))}
}

// jobResources is what the job container of every pod gets: the instance
// type's requests and limits.
func jobResources(it amlarcv1alpha1.InstanceTypeSpec) corev1.ResourceRequirements {
	return *it.Resources.DeepCopy()
}

// shmSizeRE is the CLI v2's shm_size: a count and a unit of b, k, m or g.
var shmSizeRE = regexp.MustCompile(`^([0-9]+)([bkmgBKMG])$`)

// DefaultShmSize is the CLI v2's shm_size when a job gives none.
const DefaultShmSize = "2g"

// parseShmSize reads a shm size as the CLI v2 writes it (2g, 512m: binary
// multiples, as Docker's --shm-size), or as a Kubernetes quantity.
func parseShmSize(s string) (resource.Quantity, error) {
	if s == "" {
		s = DefaultShmSize
	}
	if m := shmSizeRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil && n > 0 {
			shift := map[string]uint{"b": 0, "k": 10, "m": 20, "g": 30}[strings.ToLower(m[2])]
			if n <= (1<<62)>>shift {
				return *resource.NewQuantity(n<<shift, resource.BinarySI), nil
			}
		}
	} else if q, err := resource.ParseQuantity(s); err == nil && q.Sign() > 0 {
		return q, nil
	}
	return resource.Quantity{}, fmt.Errorf("shm size %q: want a number above 0 and a unit b, k, m or g (e.g. 2g, 512m)", s)
}
