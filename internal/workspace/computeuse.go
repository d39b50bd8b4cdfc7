package workspace

import (
	"context"
	"errors"
	"strings"
	"time"

	"outpost.dev/outpost/api"
	"outpost.dev/outpost/internal/store"
)

// feature is what work of one kind needs switched on in a compute's
// extension, and how the refusals name it.
type feature struct {
	name    string // in messages: Training, Inference
	setting string // the extension setting that turns it on
	enable  string // the --config that does, and what else it needs
	offline string // what sending work to a disconnected cluster means
}

var (
	trainingFeature  = feature{name: "Training", setting: "enableTraining", enable: "enableTraining=True`", offline: "a job sent there would wait for nothing; "}
	inferenceFeature = feature{name: "Inference", setting: "enableInference", enable: "enableInference=True allowInsecureConnections=True` (or with a TLS certificate)"}
)

// usableCompute checks that compute name of workspace rg/ws can take work
// of feature f now: attached and Succeeded, its cluster registered and
// connected, with f on in its extension. What is wrong goes to bad under
// field, and ok is false. It returns the compute and what its cluster
// last reported.
func (s *Server) usableCompute(ctx context.Context, rg, ws, name, field string, f feature, bad *badJob) (cs computeSpec, st clusterStatus, ok bool, err error) {
	o, err := s.store.Get(ctx, computeKey(rg, ws, name))
	if errors.Is(err, store.ErrNotFound) {
		names, err := s.computeNames(ctx, rg, ws)
		if err != nil {
			return cs, st, false, err
		}
		bad.add(field, "compute %s not found in workspace %s; computes: %s", name, ws, names)
		return cs, st, false, nil
	}
	if err != nil {
		return cs, st, false, err
	}
	if cs, _, err = readCompute(o); err != nil {
		return cs, st, false, err
	}
	view := s.computeView(o)
	if view.ProvisioningState != api.StateSucceeded {
		why := strings.Join(view.ProvisioningErrors, "; ")
		if why == "" {
			why = "wait until it is Succeeded (outpost ml compute show --name " + name + ")"
		}
		bad.add(field, "compute %s is %s: %s", name, view.ProvisioningState, why)
		return cs, st, false, nil
	}
	co, err := s.store.Get(ctx, clusterKey(cs.ClusterGroup, cs.Cluster))
	if errors.Is(err, store.ErrNotFound) {
		bad.add(field, "compute %s: its cluster %s/%s is no longer connected (registration deleted): connect it again, or attach another compute", name, cs.ClusterGroup, cs.Cluster)
		return cs, st, false, nil
	}
	if err != nil {
		return cs, st, false, err
	}
	cv, err := s.clusterView(co)
	if err != nil {
		return cs, st, false, err
	}
	if cv.ConnectivityStatus != api.Connected {
		since := "it has not reported yet"
		if cv.LastConnectivityTime != nil {
			since = "last seen " + cv.LastConnectivityTime.UTC().Format(time.RFC3339)
		}
		bad.add(field, "compute %s: cluster %s/%s is %s (%s): %sreconnect its agent first (kubectl -n azure-arc get pods)",
			name, cs.ClusterGroup, cs.Cluster, cv.ConnectivityStatus, since, f.offline)
		return cs, st, false, nil
	}
	exts, err := s.store.List(ctx, kindExtension, cs.ClusterGroup, kindCluster+"/"+cs.Cluster)
	if err != nil {
		return cs, st, false, err
	}
	on, extName := false, "<extension>"
	for _, e := range exts {
		var es extensionSpec
		if err := decodeStored(e, &es, nil); err != nil {
			return cs, st, false, err
		}
		extName = e.Name
		on = on || strings.EqualFold(es.Settings[f.setting], "true")
	}
	if !on {
		bad.add(field, "%s feature is not enabled on cluster %s (extension %s) of compute %s: enable it with `outpost k8s-extension update --name %s --cluster-name %s --resource-group %s --cluster-type connectedClusters --config %s",
			f.name, cs.Cluster, extName, name, extName, cs.Cluster, cs.ClusterGroup, f.enable)
		return cs, st, false, nil
	}
	if err := decodeStored(co, nil, &st); err != nil {
		return cs, st, false, err
	}
	return cs, st, true, nil
}
