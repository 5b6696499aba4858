"""Layer 1, DNS from the source's view: resolv.conf, the name through the search path and as FQDN,
the answer against the Service, loss over repeated queries, and each DNS backend asked directly.

With --from the view is the source pod's own: its resolv.conf (or, where it cannot be read, what
its dnsPolicy and dnsConfig make of it, said in the evidence), so a name its search list cannot
complete FAILs here even when the FQDN resolves."""

from __future__ import annotations

from netdoctor.judge.common import completed, error, failed, logs, names, passed, skip
from netdoctor.model import CheckResult, Evidence, Facts, Layer, State
from netdoctor.observations import DnsOutcome, DnsResult, ResolvConf

_LOST = (DnsOutcome.TIMEOUT, DnsOutcome.ERROR)


def judge(ev: Evidence) -> list[CheckResult]:
    if ev.facts.service is None:
        reason = "the target is not behind a Service"
        return [skip(i, reason) for i in ("ND-DNS-001", "ND-DNS-002", "ND-DNS-003", "ND-DNS-004", "ND-DNS-005")]
    return [_resolv_conf(ev), _resolves(ev), _matches(ev), _repeated(ev), _backends(ev)]


def expected_addresses(f: Facts) -> frozenset[str]:
    """What the Service name should resolve to: the ClusterIP, the ready endpoints if headless, or
    for an ExternalName Service the CNAME to its external name (queried as a CNAME by the plan)."""
    if f.service and f.service.external_name:
        return frozenset({f.service.external_name.rstrip(".") + "."})
    if f.service and f.service.cluster_ip:
        return frozenset({f.service.cluster_ip})
    return frozenset(e.ip for s in f.slices or () for e in s.endpoints if e.ready or f.service.publish_not_ready_addresses)


def _resolv_conf(ev: Evidence) -> CheckResult:
    done, problems = completed(ev, "ND-DNS-001")
    confs = [obs.result for _, obs in done if isinstance(obs.result, ResolvConf)]
    if not confs:
        return error("ND-DNS-001", "could not read the source's resolv.conf", problems, logs(ev, "ND-DNS-001"))
    conf, f = confs[0], ev.facts
    lines = [f"nameserver {', '.join(conf.nameservers) or 'none'}", f"search {_search(conf)}",
             f"ndots {conf.ndots}", *([conf.derived] if conf.derived else [])]
    lines += [str(u) for u in f.unread if u.layer is Layer.DNS]
    dns_ip = f.dns_service.cluster_ip if f.dns_service else None
    wanted = f"{f.source_namespace}.svc.{f.cluster_domain}"
    if wanted not in conf.search:
        return failed("ND-DNS-001", "no-cluster-search", f"search path lacks {wanted}", lines,
                      {"search": _search(conf)}, State.WARN)
    if dns_ip and conf.nameservers[:1] != (dns_ip,):
        return failed("ND-DNS-001", "nameserver-mismatch", f"nameserver is not {dns_ip} (node-local cache?)",
                      lines, {"nameservers": ", ".join(conf.nameservers), "dns_ip": dns_ip}, State.WARN)
    how = " (derived from the pod's spec)" if conf.derived else ""
    return passed("ND-DNS-001", f"nameserver {conf.nameservers[0]}, ndots {conf.ndots}{how}", lines)


def _search(conf: ResolvConf) -> str:
    return " ".join(conf.search) or "none"


def _source_conf(ev: Evidence) -> ResolvConf | None:
    """The resolv.conf the name lookups went by (ND-DNS-001's reading of it)."""
    done, _ = completed(ev, "ND-DNS-001")
    return next((obs.result for _, obs in done if isinstance(obs.result, ResolvConf)), None)


def _final(results: tuple[DnsResult, ...]) -> DnsResult:
    """The answer a resolver settles on: an answer if any, else the first non-lost one, else the last."""
    return next((r for r in results if r.outcome is DnsOutcome.ANSWER),
                next((r for r in results if r.outcome not in _LOST), results[-1]))


def _resolves(ev: Evidence) -> CheckResult:
    done, problems = completed(ev, "ND-DNS-002")
    if not done:
        return error("ND-DNS-002", "no DNS query ran", problems, logs(ev, "ND-DNS-002"))
    finals = [(step, _final(obs.result)) for step, obs in done if obs.result]
    lines = [f"{r.name} @{r.server}: {r.outcome.value} {' '.join(r.addresses)}".rstrip() for _, r in finals]
    bad = [(step, r) for step, r in finals if r.outcome is not DnsOutcome.ANSWER]
    if not bad:
        return _unproven(ev, "ND-DNS-002", "lookups", lambda step: step.action.name, lines + problems) or passed(
            "ND-DNS-002", "short name and FQDN resolve", lines + problems)
    step, worst = bad[0] if len(bad) < len(finals) else bad[-1]  # all failed: name the FQDN
    if len(bad) < len(finals):
        lines.append("the FQDN resolves but the short name does not: the search path is wrong" if step.action.search
                     else "the short name resolves but the FQDN does not")
        conf = _source_conf(ev)
        if step.action.search and worst.outcome not in _LOST and conf is not None:
            fqdn = next(s.action.name for s, r in finals if r.outcome is DnsOutcome.ANSWER)
            return failed("ND-DNS-002", "search-path", f"{step.action.name}: {worst.outcome.value} through the "
                          f"search list {_search(conf)}", lines + problems,
                          {"name": step.action.name, "search": _search(conf), "ndots": str(conf.ndots),
                           "fqdn": fqdn.rstrip(".")}, log=logs(ev, "ND-DNS-002"))
    cause = {DnsOutcome.NXDOMAIN: "nxdomain", DnsOutcome.SERVFAIL: "servfail", DnsOutcome.REFUSED: "refused",
             DnsOutcome.NOANSWER: "noanswer"}.get(worst.outcome, "timeout")
    params = {"name": worst.name, "server": worst.server}
    if cause == "timeout":
        cause, params = _why_lost(ev.facts, params)
    return failed("ND-DNS-002", cause, f"{worst.name}: {worst.outcome.value}", lines + problems, params,
                  log=logs(ev, "ND-DNS-002"))


def _why_lost(f: Facts, params: dict) -> tuple[str, dict]:
    """Lost DNS queries: no DNS pod at all, or an egress policy of the source that forgets DNS."""
    if f.dns_service is not None and not f.dns_backends:
        return "no-dns-pods", params
    denied = [flow.verdict.egress for flow in f.dns_policy or () if not flow.verdict.egress.allowed]
    if f.dns_policy and len(denied) == len(f.dns_policy):
        dns_pod = {"dns_pod": f"{f.dns_backends[0].namespace}/{f.dns_backends[0].name}"} if f.dns_backends else {}
        return "egress-blocked", {**params, "policies": ", ".join(denied[0].isolating),
                                  "policy": denied[0].isolating[0].split("/")[-1], **dns_pod}
    return "timeout", params


def _matches(ev: Evidence) -> CheckResult:
    done, _ = completed(ev, "ND-DNS-002")  # judged on the name lookups, no steps of its own
    answers = [_final(obs.result) for _, obs in done if obs.result]
    answers = [r for r in answers if r.outcome is DnsOutcome.ANSWER]
    if not answers:
        return skip("ND-DNS-003", "no DNS answer to compare")
    want = expected_addresses(ev.facts)
    for r in answers:
        got = frozenset(r.addresses)
        if got != want and not (ev.facts.service.headless and got and got <= want):
            params = {"name": r.name, "got": ", ".join(sorted(got)), "want": ", ".join(sorted(want)) or "no ready endpoint"}
            return failed("ND-DNS-003", "stale", f"{r.name} → {params['got']}, expected {params['want']}",
                          [f"{r.name} → {params['got']}", f"Service → {params['want']}"], params)
    return passed("ND-DNS-003", f"answers match {', '.join(sorted(want))}")


def _repeated(ev: Evidence) -> CheckResult:
    done, problems = completed(ev, "ND-DNS-004")
    results = [r for _, obs in done for r in obs.result]
    if not results:
        return error("ND-DNS-004", "repeated queries did not run", problems) if problems else skip(
            "ND-DNS-004", "no repeated queries planned")
    lost = [r for r in results if r.outcome in _LOST]
    counts = {o: sum(r.outcome is o for r in results) for o in DnsOutcome}
    line = ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)
    if not lost:
        return _unproven(ev, "ND-DNS-004", "query runs", lambda step: step.title or step.key, [line] + problems) or passed(
            "ND-DNS-004", f"{len(results)}/{len(results)} answered", [line])
    params = {"lost": str(len(lost)), "total": str(len(results)), "server": results[0].server}
    if len(lost) == len(results):  # not lossy: nothing gets through, the name lookups say why
        return failed("ND-DNS-004", "silent", f"0 of {len(results)} queries answered", [line], params)
    return failed("ND-DNS-004", "lossy", f"{len(lost)} of {len(results)} queries lost", [line], params,
                  log=logs(ev, "ND-DNS-004"))


def _backends(ev: Evidence) -> CheckResult:
    done, problems = completed(ev, "ND-DNS-005")
    unread = next((u for u in ev.facts.unread if u.layer is Layer.DNS and u.what.startswith("pods")), None)
    if not done:
        return error("ND-DNS-005", "no DNS backend was queried", problems) if problems else skip(
            "ND-DNS-005", f"cannot read the DNS pods ({unread.why})" if unread else "no DNS backend pods found")
    by_ip = {p.ip: p.name for p in ev.facts.dns_backends}
    want = expected_addresses(ev.facts)
    down, disagree, lines = [], [], []
    for step, obs in done:
        pod = by_ip.get(step.action.server, step.action.server)
        final = _final(obs.result)
        answered = sum(r.outcome not in _LOST for r in obs.result)
        lines.append(f"{pod} ({step.action.server}): {answered}/{len(obs.result)} answered, {final.outcome.value}")
        if answered == 0:
            down.append(pod)
        elif final.outcome is DnsOutcome.ANSWER and frozenset(final.addresses) != want and not ev.facts.service.headless:
            disagree.append(pod)
    if down and len(down) == len(done):
        return failed("ND-DNS-005", "all-down", "no DNS backend answers", lines + problems, {"pods": names(down), "pod": down[0]})
    if down:
        return failed("ND-DNS-005", "backend-down", f"{len(down)} of {len(done)} DNS backends do not answer",
                      lines + problems, {"pods": names(down), "pod": down[0]}, log=logs(ev, "ND-DNS-005"))
    if disagree and len(disagree) < len(done):  # all alike: a stale record, ND-DNS-003's finding
        return failed("ND-DNS-005", "backend-disagrees", "DNS backends disagree", lines, {"pods": names(disagree), "pod": disagree[0]})
    return _unproven(ev, "ND-DNS-005", "DNS backends", lambda step: by_ip.get(step.action.server, step.action.server),
                     lines + problems) or passed("ND-DNS-005", f"{len(done)} DNS backend(s) answer", lines + problems)


def _unproven(ev: Evidence, check_id: str, what: str, name, lines: list[str]) -> CheckResult | None:
    """ERROR when some of the check's steps errored (an error is no evidence): which `what` lack
    it, by `name(step)`; None when every step ran."""
    runs = ev.runs(check_id)
    ran = {step.key for step, _ in completed(ev, check_id)[0]}
    missing = [name(step) for step, _ in runs if step.key not in ran]
    if not missing:
        return None
    return error(check_id, f"{len(missing)} of {len(runs)} {what} errored: no evidence for {names(missing)}", lines,
                 logs(ev, check_id))
