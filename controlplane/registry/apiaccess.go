package registry

// APIAccessPath is where a pod's containers find their service account
// token, the cluster's CA and their namespace, as client-go's in-cluster
// config expects.
const APIAccessPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// RootCAConfigMap is the ConfigMap in every namespace holding the
// cluster's CA (ca.crt), which pods use to trust the API server.
const RootCAConfigMap = "kube-root-ca.crt"
