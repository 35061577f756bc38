use super::*;

fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counters_show_in_the_exposition() {
    let metrics = Metrics::new();
    let (bff, cms): (Arc<str>, Arc<str>) = (Arc::from("bff"), Arc::from("cms"));
    metrics.signatures_issued(&bff, 3);
    // Another `Arc` with the same name counts on the same series.
    metrics.signatures_issued(&Arc::from("bff"), 2);
    metrics.signatures_issued(&cms, 1);
    metrics.verified(None);
    metrics.verified(Some(VerifyFailure::Expired));
    metrics.verified(Some(VerifyFailure::Expired));
    metrics.quota_rejected(&bff);
    metrics.quota_store_error("redis", "deny");
    metrics.config_reloaded(true);
    metrics.config_reloaded(false);
    metrics.config_reloaded(false);

    let text = metrics.encode();
    let expect = [
        ("vod_signer_signatures_issued_total{caller=\"bff\"}", 5.0),
        ("vod_signer_signatures_issued_total{caller=\"cms\"}", 1.0),
        ("vod_signer_verifications_total{outcome=\"VALID\"}", 1.0),
        ("vod_signer_verifications_total{outcome=\"EXPIRED\"}", 2.0),
        (
            "vod_signer_verifications_total{outcome=\"BAD_SIGNATURE\"}",
            0.0,
        ),
        ("vod_signer_quota_rejections_total{caller=\"bff\"}", 1.0),
        (
            "vod_signer_quota_store_errors_total{store=\"redis\",on_store_error=\"deny\"}",
            1.0,
        ),
        ("vod_signer_config_reloads_total{result=\"ok\"}", 1.0),
        ("vod_signer_config_reloads_total{result=\"failed\"}", 2.0),
    ];
    for (series, value) in expect {
        assert_eq!(
            line_value(&text, series),
            Some(value),
            "{series} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn request_counters_and_histograms_are_created_on_first_use() {
    let metrics = Metrics::new();
    assert!(!metrics.encode().contains("grpc_requests_total{"));
    metrics.request_counter(0, 0).inc();
    metrics.request_counter(0, 0).inc();
    metrics.request_counter(0, 8).inc();
    metrics.duration_histogram(0).observe(0.001);
    let text = metrics.encode();
    let service = "grpc_service=\"vod.signer.v1.UploadSigner\",grpc_method=\"IssueSignature\"";
    assert_eq!(
        line_value(
            &text,
            &format!("vod_signer_grpc_requests_total{{{service},grpc_code=\"OK\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        line_value(
            &text,
            &format!(
                "vod_signer_grpc_requests_total{{{service},grpc_code=\"RESOURCE_EXHAUSTED\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        line_value(
            &text,
            &format!("vod_signer_grpc_request_duration_seconds_count{{{service}}}")
        ),
        Some(1.0)
    );
}

#[test]
fn shed_calls_are_counted_by_reason_from_zero() {
    let metrics = Metrics::new();
    let series = |reason: &str| format!("vod_signer_calls_shed_total{{reason=\"{reason}\"}}");
    // Both reasons show before anything was shed, so an alert need not wait for a first one.
    let text = metrics.encode();
    assert_eq!(line_value(&text, &series("in_flight")), Some(0.0), "{text}");
    assert_eq!(
        line_value(&text, &series("queue_delay")),
        Some(0.0),
        "{text}"
    );
    metrics.call_shed(Shed::QueueDelay);
    metrics.call_shed(Shed::QueueDelay);
    metrics.call_shed(Shed::InFlight);
    let text = metrics.encode();
    assert_eq!(line_value(&text, &series("in_flight")), Some(1.0), "{text}");
    assert_eq!(
        line_value(&text, &series("queue_delay")),
        Some(2.0),
        "{text}"
    );
}

#[test]
fn durations_are_exposed_as_a_classic_histogram_with_the_server_buckets() {
    let metrics = Metrics::new();
    // On a bound (`le` is inclusive), inside, and above the last bound.
    for seconds in [0.000_05, 0.001, 2.0] {
        metrics.duration_histogram(0).observe(seconds);
    }
    let text = metrics.encode();
    let name = "vod_signer_grpc_request_duration_seconds";
    let labels = "grpc_service=\"vod.signer.v1.UploadSigner\",grpc_method=\"IssueSignature\"";
    for line in [
        format!("# TYPE {name} histogram"),
        format!("# UNIT {name} seconds"),
        format!("# HELP {name} Time from receiving a gRPC call to sending its status."),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    let bucket = |le: &str| line_value(&text, &format!("{name}_bucket{{le=\"{le}\",{labels}}}"));
    assert_eq!(bucket("0.00005"), Some(1.0), "{text}");
    assert_eq!(bucket("0.001953125"), Some(2.0), "{text}");
    assert_eq!(bucket("1.1920928955078126"), Some(2.0), "{text}");
    assert_eq!(bucket("+Inf"), Some(3.0), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
            .count(),
        13,
        "12 bounds and +Inf:\n{text}"
    );
    assert_eq!(
        line_value(&text, &format!("{name}_count{{{labels}}}")),
        Some(3.0)
    );
    let sum = line_value(&text, &format!("{name}_sum{{{labels}}}")).expect("a sum");
    assert!((sum - 2.001_05).abs() < 1e-9, "{sum}");
}
