// Package coreapi holds the defaults and validation of core/v1 types that
// several kinds share (pod specs in pods and every workload, services,
// config keys, taints), as Kubernetes' pkg/apis/core/validation.
package coreapi

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func ValidateConfigKey(k string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsConfigMapKey(k) {
		errs = append(errs, field.Invalid(p, k, msg))
	}
	return errs
}

func ValidateTaint(t corev1.Taint, p *field.Path) field.ErrorList {
	errs := metavalidation.ValidateLabelName(t.Key, p.Child("key"))
	switch t.Effect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		errs = append(errs, field.NotSupported(p.Child("effect"), t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}))
	}
	return errs
}

// DefaultPodOnly fills what Kubernetes' admission plugins add to pods (never
// to templates): service account, default tolerations. Priority is the
// Priority admission plugin's (admission/builtin), which knows the classes.
func DefaultPodOnly(s *corev1.PodSpec) {
	if s.ServiceAccountName == "" && s.DeprecatedServiceAccount == "" {
		s.ServiceAccountName = "default"
	}
	if s.DeprecatedServiceAccount == "" {
		s.DeprecatedServiceAccount = s.ServiceAccountName
	}
	if s.EnableServiceLinks == nil {
		t := true
		s.EnableServiceLinks = &t
	}
	hasNoExecute := func(key string) bool {
		for _, t := range s.Tolerations {
			if t.Key == key && t.Effect == corev1.TaintEffectNoExecute {
				return true
			}
		}
		return false
	}
	// A host-network pod's container ports are ports of the node: as
	// Kubernetes defaults pods (not templates), they are its host ports, so
	// the scheduler's and the node's host-port checks see them.
	if s.HostNetwork {
		defaultHostNetworkPorts(s.InitContainers)
		defaultHostNetworkPorts(s.Containers)
	}
	// Kubernetes' DefaultTolerationSeconds admission: evict 300s after a node
	// goes not-ready or unreachable.
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		if !hasNoExecute(key) {
			secs := int64(300)
			s.Tolerations = append(s.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
		}
	}
}

func defaultHostNetworkPorts(containers []corev1.Container) {
	for i := range containers {
		for j := range containers[i].Ports {
			if p := &containers[i].Ports[j]; p.HostPort == 0 {
				p.HostPort = p.ContainerPort
			}
		}
	}
}

// DefaultPodSpec fills the defaults Kubernetes gives a pod spec (also used for
// the pod templates of workloads).
func DefaultPodSpec(s *corev1.PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	if s.TerminationGracePeriodSeconds == nil {
		g := int64(corev1.DefaultTerminationGracePeriodSeconds)
		s.TerminationGracePeriodSeconds = &g
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i])
	}
	// Ephemeral containers get a container's defaults (the types share
	// their fields).
	for i := range s.EphemeralContainers {
		c := corev1.Container(s.EphemeralContainers[i].EphemeralContainerCommon)
		defaultContainer(&c)
		s.EphemeralContainers[i].EphemeralContainerCommon = corev1.EphemeralContainerCommon(c)
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i])
	}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		mode := int32(corev1.ConfigMapVolumeSourceDefaultMode)
		switch {
		case v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil:
			v.ConfigMap.DefaultMode = &mode
		case v.Secret != nil && v.Secret.DefaultMode == nil:
			v.Secret.DefaultMode = &mode
		case v.DownwardAPI != nil && v.DownwardAPI.DefaultMode == nil:
			v.DownwardAPI.DefaultMode = &mode
		case v.Projected != nil && v.Projected.DefaultMode == nil:
			v.Projected.DefaultMode = &mode
		case v.HostPath != nil && v.HostPath.Type == nil:
			t := corev1.HostPathUnset
			v.HostPath.Type = &t
		case v.VolumeSource == (corev1.VolumeSource{}):
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
}

func defaultContainer(c *corev1.Container) {
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	if c.ImagePullPolicy == "" {
		tag := ""
		img := c.Image
		if i := strings.LastIndex(img, "@"); i >= 0 {
			tag = "digest"
		} else if i := strings.LastIndex(img, ":"); i >= 0 && !strings.Contains(img[i:], "/") {
			tag = img[i+1:]
		}
		if tag == "" || tag == "latest" {
			c.ImagePullPolicy = corev1.PullAlways
		} else {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if p.TimeoutSeconds == 0 {
			p.TimeoutSeconds = 1
		}
		if p.PeriodSeconds == 0 {
			p.PeriodSeconds = 10
		}
		if p.SuccessThreshold == 0 {
			p.SuccessThreshold = 1
		}
		if p.FailureThreshold == 0 {
			p.FailureThreshold = 3
		}
		if p.HTTPGet != nil && p.HTTPGet.Scheme == "" {
			p.HTTPGet.Scheme = corev1.URISchemeHTTP
		}
		if p.HTTPGet != nil && p.HTTPGet.Path == "" {
			p.HTTPGet.Path = "/"
		}
	}
	// Limits without requests imply equal requests.
	for name, q := range c.Resources.Limits {
		if _, ok := c.Resources.Requests[name]; !ok {
			if c.Resources.Requests == nil {
				c.Resources.Requests = corev1.ResourceList{}
			}
			c.Resources.Requests[name] = q.DeepCopy()
		}
	}
}

func QOSClass(s *corev1.PodSpec) corev1.PodQOSClass {
	guaranteed, any := true, false
	for _, c := range s.Containers {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim {
				any = true
			}
			if !hasLim || !hasReq || req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	default:
		return corev1.PodQOSBurstable
	}
}

// ValidatePodSpec checks the parts of a pod spec every pod must get right.
func ValidatePodSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), ""))
	}
	names := sets.New[string]()
	volumes := sets.New[string]()
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i)
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, msg))
		}
		if volumes.Has(v.Name) {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		volumes.Insert(v.Name)
	}
	check := func(cs []corev1.Container, cp *field.Path) {
		for i, c := range cs {
			ip := cp.Index(i)
			if c.Name == "" {
				errs = append(errs, field.Required(ip.Child("name"), ""))
			} else {
				for _, msg := range validation.IsDNS1123Label(c.Name) {
					errs = append(errs, field.Invalid(ip.Child("name"), c.Name, msg))
				}
			}
			if names.Has(c.Name) {
				errs = append(errs, field.Duplicate(ip.Child("name"), c.Name))
			}
			names.Insert(c.Name)
			if strings.TrimSpace(c.Image) == "" {
				errs = append(errs, field.Required(ip.Child("image"), ""))
			}
			for j, port := range c.Ports {
				pp := ip.Child("ports").Index(j)
				for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
					errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
				}
				if port.Name != "" {
					for _, msg := range validation.IsValidPortName(port.Name) {
						errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
					}
				}
				errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
			}
			for j, m := range c.VolumeMounts {
				if !volumes.Has(m.Name) {
					errs = append(errs, field.NotFound(ip.Child("volumeMounts").Index(j).Child("name"), m.Name))
				}
				mp := ip.Child("volumeMounts").Index(j)
				if m.MountPath == "" {
					errs = append(errs, field.Required(mp.Child("mountPath"), ""))
				}
				if m.SubPath != "" {
					errs = append(errs, validateDescendingPath(m.SubPath, mp.Child("subPath"))...)
				}
				if m.SubPathExpr != "" {
					if m.SubPath != "" {
						errs = append(errs, field.Invalid(mp.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
					}
					errs = append(errs, validateDescendingPath(m.SubPathExpr, mp.Child("subPathExpr"))...)
				}
			}
			for name, q := range c.Resources.Requests {
				if lim, ok := c.Resources.Limits[name]; ok && q.Cmp(lim) > 0 {
					errs = append(errs, field.Invalid(ip.Child("resources", "requests").Key(string(name)), q.String(), "must be less than or equal to "+string(name)+" limit of "+lim.String()))
				}
			}
			for j, e := range c.Env {
				if e.Name == "" {
					errs = append(errs, field.Required(ip.Child("env").Index(j).Child("name"), ""))
				}
			}
		}
	}
	check(s.InitContainers, p.Child("initContainers"))
	check(s.Containers, p.Child("containers"))
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	for k, v := range s.NodeSelector {
		errs = append(errs, metavalidation.ValidateLabels(map[string]string{k: v}, p.Child("nodeSelector"))...)
	}
	if s.NodeName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.NodeName) {
			errs = append(errs, field.Invalid(p.Child("nodeName"), s.NodeName, msg))
		}
	}
	if s.SecurityContext != nil {
		errs = append(errs, validateSysctls(s.SecurityContext.Sysctls, s.HostNetwork, p.Child("securityContext", "sysctls"))...)
	}
	return errs
}

// sysctlNameRE is a sysctl name: components of lower-case letters, digits,
// '-' and '_' (not at their ends) joined by '.' or '/'.
var sysctlNameRE = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)

// maxSysctlName is the longest sysctl name the API takes.
const maxSysctlName = 253

// validateSysctls checks a pod's sysctls as the API does: well-formed names,
// each once, and none of the network namespace's for a pod on the host's
// network. Whether a node allows a sysctl is the node's to say.
func validateSysctls(sysctls []corev1.Sysctl, hostNetwork bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[string]()
	for i, s := range sysctls {
		np := p.Index(i).Child("name")
		switch {
		case s.Name == "":
			errs = append(errs, field.Required(np, ""))
		case len(s.Name) > maxSysctlName || !sysctlNameRE.MatchString(s.Name):
			errs = append(errs, field.Invalid(np, s.Name, fmt.Sprintf("must have at most %d characters and be components of lower-case letters, digits, '-' and '_' (beginning and ending with a letter or digit) separated by '.' or '/'", maxSysctlName)))
		case seen.Has(s.Name):
			errs = append(errs, field.Duplicate(np, s.Name))
		case hostNetwork && (strings.HasPrefix(s.Name, "net.") || strings.HasPrefix(s.Name, "net/")):
			errs = append(errs, field.Invalid(np, s.Name, "may not be specified when 'hostNetwork' is true"))
		}
		seen.Insert(s.Name)
	}
	return errs
}

func validateProtocol(proto corev1.Protocol, p *field.Path) field.ErrorList {
	switch proto {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return nil
	case "":
		return field.ErrorList{field.Required(p, "")}
	}
	return field.ErrorList{field.NotSupported(p, proto, []string{"SCTP", "TCP", "UDP"})}
}

// DefaultService fills a Service's defaults; addresses and ports are allocated
// by the service hooks.
func DefaultService(s *corev1.Service) {
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP && s.Spec.SessionAffinityConfig == nil {
		t := int32(corev1.DefaultClientIPServiceAffinitySeconds)
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if s.Spec.InternalTrafficPolicy == nil {
		t := corev1.ServiceInternalTrafficPolicyCluster
		s.Spec.InternalTrafficPolicy = &t
	}
	if (s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer) && s.Spec.ExternalTrafficPolicy == "" {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.AllocateLoadBalancerNodePorts == nil {
		t := true
		s.Spec.AllocateLoadBalancerNodePorts = &t
	}
	if s.Spec.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		s.Spec.IPFamilyPolicy = &p
	}
	if len(s.Spec.IPFamilies) == 0 {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
}

// ValidateService checks a Service against the API rules and the cluster's
// service CIDR and NodePort range.
// ServiceRanges are the cluster's ranges a Service's addresses come from.
type ServiceRanges struct {
	ServiceCIDR              *net.IPNet
	NodePortMin, NodePortMax int
}

func ValidateService(s *corev1.Service, cfg ServiceRanges) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	switch s.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		errs = append(errs, field.NotSupported(sp.Child("type"), s.Spec.Type, []string{"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"}))
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		if s.Spec.ExternalName == "" {
			errs = append(errs, field.Required(sp.Child("externalName"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(s.Spec.ExternalName, ".")) {
				errs = append(errs, field.Invalid(sp.Child("externalName"), s.Spec.ExternalName, msg))
			}
		}
		return errs
	}
	headless := s.Spec.ClusterIP == corev1.ClusterIPNone
	if len(s.Spec.Ports) == 0 && !headless {
		errs = append(errs, field.Required(sp.Child("ports"), ""))
	}
	if headless && s.Spec.Type != corev1.ServiceTypeClusterIP {
		errs = append(errs, field.Invalid(sp.Child("clusterIP"), s.Spec.ClusterIP, "may not be set to 'None' for "+string(s.Spec.Type)+" services"))
	}
	if s.Spec.ClusterIP != "" && !headless {
		ip := net.ParseIP(s.Spec.ClusterIP)
		switch {
		case ip == nil:
			errs = append(errs, field.Invalid(sp.Child("clusterIP"), s.Spec.ClusterIP, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff) or 'None'"))
		case cfg.ServiceCIDR != nil && !cfg.ServiceCIDR.Contains(ip):
			errs = append(errs, field.Invalid(sp.Child("clusterIPs").Index(0), s.Spec.ClusterIP, fmt.Sprintf("failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", s.Spec.ClusterIP, cfg.ServiceCIDR)))
		}
	}
	portNames := sets.New[string]()
	seen := map[string]bool{}
	for i, port := range s.Spec.Ports {
		pp := sp.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), ""))
		} else if port.Name != "" {
			for _, msg := range validation.IsDNS1123Label(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if portNames.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			portNames.Insert(port.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(port.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), port.Port, msg))
		}
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
		if port.TargetPort.Type == intstr.Int && port.TargetPort.IntVal != 0 {
			for _, msg := range validation.IsValidPortNum(int(port.TargetPort.IntVal)) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), port.TargetPort.IntVal, msg))
			}
		} else if port.TargetPort.Type == intstr.String {
			for _, msg := range validation.IsValidPortName(port.TargetPort.StrVal) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), port.TargetPort.StrVal, msg))
			}
		}
		if port.NodePort != 0 {
			if s.Spec.Type == corev1.ServiceTypeClusterIP {
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			} else if port.NodePort < int32(cfg.NodePortMin) || port.NodePort > int32(cfg.NodePortMax) {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), port.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", cfg.NodePortMin, cfg.NodePortMax)))
			}
			k := fmt.Sprintf("%s/%d", port.Protocol, port.NodePort)
			if seen[k] {
				errs = append(errs, field.Duplicate(pp.Child("nodePort"), port.NodePort))
			}
			seen[k] = true
		}
	}
	errs = append(errs, metavalidation.ValidateLabels(s.Spec.Selector, sp.Child("selector"))...)
	switch s.Spec.SessionAffinity {
	case corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, field.NotSupported(sp.Child("sessionAffinity"), s.Spec.SessionAffinity, []string{"ClientIP", "None"}))
	}
	if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPAffinitySeconds {
			errs = append(errs, field.Invalid(sp.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t, fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPAffinitySeconds)))
		}
	}
	for i, ip := range s.Spec.ExternalIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(sp.Child("externalIPs").Index(i), ip, "must be a valid IP address"))
		}
	}
	return errs
}

// maxClientIPAffinitySeconds is Kubernetes' upper bound for
// sessionAffinityConfig.clientIP.timeoutSeconds (one day).
const maxClientIPAffinitySeconds = 86400

// validateDescendingPath checks a path that must stay below the directory
// it is taken from: relative, with no '..' step.
func validateDescendingPath(p string, fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.IsAbs(p) {
		errs = append(errs, field.Invalid(fp, p, "must be a relative path"))
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			errs = append(errs, field.Invalid(fp, p, "must not contain '..'"))
			break
		}
	}
	return errs
}
