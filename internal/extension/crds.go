package extension

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	amlarcv1alpha1 "outpost.dev/outpost/api/amlarc/v1alpha1"
	trainingv1alpha1 "outpost.dev/outpost/api/training/v1alpha1"
)

// Names of the extension's CustomResourceDefinitions.
const (
	InstanceTypeCRD = amlarcv1alpha1.Resource + "." + amlarcv1alpha1.Group
	TrainingJobCRD  = trainingv1alpha1.Resource + "." + trainingv1alpha1.Group
)

// AnnotationOnRemove on a rendered object says what the agent does with it
// when the extension no longer renders it, or is deleted. OnRemoveKeep
// leaves it: deleting a CRD deletes every object of its kind, and users'
// InstanceTypes must outlive a reinstall of the extension.
const (
	AnnotationOnRemove = "outpost.dev/on-remove"
	OnRemoveKeep       = "keep"
)

// quantityPattern is a non-negative Kubernetes quantity: a decimal number
// with an optional binary (Ki..Ei) or decimal (n, u, m, k, M..E) suffix or
// exponent. A negative request means nothing, so the sign is left out.
const quantityPattern = `^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$`

// quantityValue is the schema of one resource amount: an integer or a
// quantity string, as in a pod's resources.
func quantityValue() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{
		XIntOrString: true,
		AnyOf:        []apiextensionsv1.JSONSchemaProps{{Type: "integer"}, {Type: "string"}},
		Pattern:      quantityPattern,
		Minimum:      new(0.0),
		// Bounds what CEL rules pay to read the value.
		MaxLength: new(int64(64)),
	}
}

// positive is a CEL rule: the map's key r, when given, is above zero. The
// quantity() library reads the strings; an integer is turned into one.
// Strings the pattern refuses are left to the pattern.
func positive(r string) apiextensionsv1.ValidationRule {
	v := "string(self['" + r + "'])"
	return apiextensionsv1.ValidationRule{
		Rule:    "!('" + r + "' in self) || !isQuantity(" + v + ") || quantity(" + v + ").isGreaterThan(quantity('0'))",
		Message: r + " must be above 0",
	}
}

// resourceMap is requests or limits: a map of the keys allowed there to
// amounts, cpu and memory required. A map rather than an object with
// properties, because an unknown property would be dropped silently where
// an unknown key of a map can be refused.
func resourceMap(desc string, allowed []string, rules ...apiextensionsv1.ValidationRule) apiextensionsv1.JSONSchemaProps {
	list := ""
	for i, k := range allowed {
		if i > 0 {
			list += ", "
		}
		list += "'" + k + "'"
	}
	return apiextensionsv1.JSONSchemaProps{
		Type:        "object",
		Description: desc,
		Required:    []string{"cpu", "memory"},
		// Bounds the cost of the rules below; above the keys allowed, so
		// that a misplaced key meets the rule that names the allowed ones.
		MaxProperties:        new(int64(16)),
		AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: new(quantityValue())},
		XValidations: append([]apiextensionsv1.ValidationRule{
			{Rule: "self.all(k, k in [" + list + "])", Message: "may name only " + list},
			positive("cpu"),
			positive("memory"),
		}, rules...),
	}
}

// notAbove is a CEL rule on resources: requests of r do not exceed its
// limits, which the API server would otherwise refuse on every job pod.
func notAbove(r string) apiextensionsv1.ValidationRule {
	req, lim := "string(self.requests['"+r+"'])", "string(self.limits['"+r+"'])"
	return apiextensionsv1.ValidationRule{
		Rule: "!has(self.requests) || !has(self.limits) || !('" + r + "' in self.requests) || !('" + r + "' in self.limits) || " +
			"!isQuantity(" + req + ") || !isQuantity(" + lim + ") || quantity(" + req + ").compareTo(quantity(" + lim + ")) <= 0",
		Message: "requests." + r + " must not be above limits." + r,
	}
}

func (r *renderer) crdMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: r.labels(nil), Annotations: map[string]string{AnnotationOnRemove: OnRemoveKeep}}
}

func crdTypeMeta() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiextensionsv1.SchemeGroupVersion.String(), Kind: "CustomResourceDefinition"}
}

// crdDef is what differs between the extension's CustomResourceDefinitions.
// Each has one version, served and stored, whose schema holds apiVersion,
// kind, metadata, spec and, where there is one, status, which is then a
// subresource.
type crdDef struct {
	name, group, version              string
	scope                             apiextensionsv1.ResourceScope
	plural, singular, kind, shortName string
	spec                              apiextensionsv1.JSONSchemaProps
	status                            *apiextensionsv1.JSONSchemaProps
	columns                           []apiextensionsv1.CustomResourceColumnDefinition
}

func (r *renderer) crd(c crdDef) *apiextensionsv1.CustomResourceDefinition {
	props := map[string]apiextensionsv1.JSONSchemaProps{"apiVersion": str(""), "kind": str(""), "metadata": {Type: "object"}, "spec": c.spec}
	var sub *apiextensionsv1.CustomResourceSubresources
	if c.status != nil {
		props["status"] = *c.status
		sub = &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   crdTypeMeta(),
		ObjectMeta: r.crdMeta(c.name),
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: c.group,
			Scope: c.scope,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: c.plural, Singular: c.singular,
				Kind: c.kind, ListKind: c.kind + "List",
				ShortNames: []string{c.shortName},
			},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: c.version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:       "object",
					Required:   []string{"spec"},
					Properties: props,
				}},
				Subresources:             sub,
				AdditionalPrinterColumns: c.columns,
			}},
		},
	}
}

func str(desc string) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "string", Description: desc}
}

func integer(desc string, min float64) apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int32", Description: desc, Minimum: &min}
}

// instanceTypeCRD is the Azure ML extension's InstanceType: the same group,
// kinds and shape, so that its manifests apply unchanged.
func (r *renderer) instanceTypeCRD() *apiextensionsv1.CustomResourceDefinition {
	gpu := "string(self['nvidia.com/gpu'])"
	spec := apiextensionsv1.JSONSchemaProps{
		Type:        "object",
		Description: "Resources and a node selector that jobs and deployments pick by name.",
		Required:    []string{"resources"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"nodeSelector": {
				Type:                 "object",
				Description:          "Labels a node must have to run the instance type's pods.",
				AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: new(str(""))},
			},
			"resources": {
				Type:        "object",
				Description: "Requests and limits of each pod: cpu and memory in both; nvidia.com/gpu, a whole number, in limits only.",
				Required:    []string{"requests", "limits"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"requests": resourceMap("cpu and memory that the scheduler reserves for each pod.", []string{"cpu", "memory"}),
					"limits": resourceMap("cpu, memory and nvidia.com/gpu that each pod may use.", []string{"cpu", "memory", "nvidia.com/gpu"},
						apiextensionsv1.ValidationRule{
							Rule:    "!('nvidia.com/gpu' in self) || " + gpu + ".matches('^[0-9]+$')",
							Message: "nvidia.com/gpu must be a whole number of GPUs",
						}),
				},
				XValidations: []apiextensionsv1.ValidationRule{notAbove("cpu"), notAbove("memory")},
			},
		},
	}
	return r.crd(crdDef{
		name: InstanceTypeCRD, group: amlarcv1alpha1.Group, version: amlarcv1alpha1.Version,
		scope:  apiextensionsv1.ClusterScoped,
		plural: amlarcv1alpha1.Resource, singular: "instancetype", kind: amlarcv1alpha1.Kind, shortName: "it",
		spec: spec,
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			{Name: "Node Selector", Type: "string", JSONPath: ".spec.nodeSelector"},
			{Name: "CPU", Type: "string", JSONPath: ".spec.resources.limits.cpu"},
			{Name: "GPU", Type: "string", JSONPath: `.spec.resources.limits.nvidia\.com/gpu`},
			{Name: "Memory", Type: "string", JSONPath: ".spec.resources.limits.memory"},
			{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
		},
	})
}

// trainingJobCRD is the job resource the agent creates and the training
// operator runs (api/training/v1alpha1).
func (r *renderer) trainingJobCRD() *apiextensionsv1.CustomResourceDefinition {
	spec := apiextensionsv1.JSONSchemaProps{
		Type:     "object",
		Required: []string{"jobId", "image", "instanceCount", "secretName"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"jobId":         str("The workspace's resource id of the job."),
			"image":         {Type: "string", Description: "The environment's image, which the job's wrapper runs in.", MinLength: new(int64(1))},
			"instanceType":  str("An InstanceType's name; defaultinstancetype when empty."),
			"instanceCount": integer("How many pods the job runs on, all placed at once.", 1),
			"distribution": {
				Type:     "object",
				Required: []string{"type"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					// The operator's framework plugins say which types exist.
					"type":                    str("pytorch, tensorflow or mpi."),
					"processCountPerInstance": integer("", 0),
					"workerCount":             integer("", 0),
					"parameterServerCount":    integer("", 0),
				},
			},
			"shmSize":        str("Size of /dev/shm, e.g. 2g (the default) or 512m."),
			"timeoutSeconds": {Type: "integer", Format: "int64", Minimum: new(0.0), Description: "The job fails when it runs longer (limits.timeout)."},
			"secretName":     {Type: "string", Description: "The Secret with the job's credentials.", MinLength: new(int64(1))},
			"cancel":         {Type: "boolean", Description: "Ends the job's pods; the job becomes Canceled."},
		},
	}
	status := apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"phase":              str("Queued, Starting, Running, Succeeded, Failed or Canceled."),
			"reason":             str(""),
			"message":            str(""),
			"startTime":          {Type: "string", Format: "date-time"},
			"completionTime":     {Type: "string", Format: "date-time"},
			"observedGeneration": {Type: "integer", Format: "int64"},
			"instances": {
				Type: "array",
				Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
					Type:     "object",
					Required: []string{"index", "pod"},
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"index":    {Type: "integer", Format: "int32"},
						"pod":      str(""),
						"node":     str(""),
						"phase":    str(""),
						"exitCode": {Type: "integer", Format: "int32"},
						"reason":   str(""),
					},
				}},
			},
		},
	}
	return r.crd(crdDef{
		name: TrainingJobCRD, group: trainingv1alpha1.Group, version: trainingv1alpha1.Version,
		scope:  apiextensionsv1.NamespaceScoped,
		plural: trainingv1alpha1.Resource, singular: "trainingjob", kind: trainingv1alpha1.Kind, shortName: "tj",
		spec: spec, status: &status,
		columns: []apiextensionsv1.CustomResourceColumnDefinition{
			{Name: "Phase", Type: "string", JSONPath: ".status.phase"},
			{Name: "Instances", Type: "integer", JSONPath: ".spec.instanceCount"},
			{Name: "Reason", Type: "string", JSONPath: ".status.reason"},
			{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
		},
	})
}
