//! What only the Lambda functions need (feature `lambda`): the CLI never
//! links it.

/// Tells Lambda why the function could not start (`POST /runtime/init/error`),
/// so that the console and the invocation that hit the cold start show our
/// reason as `Runtime.InitError` instead of an anonymous `Runtime.ExitError`.
/// lambda_runtime reports init errors only for SnapStart hooks, hence our own
/// request. Best effort: outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) it does
/// nothing, and a failed report is logged; the caller exits with the original
/// error either way.
pub async fn report_init_error(error_type: &str, error: &(dyn std::error::Error + 'static)) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    let diagnostic = lambda_runtime::Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message,
    };
    let sent = async {
        let base: http::Uri = format!("http://{api}").parse()?;
        let client = lambda_runtime_api_client::Client::builder()
            .with_endpoint(base)
            .build()?;
        let request = lambda_runtime_api_client::build_request()
            .method(http::Method::POST)
            .uri("/2018-06-01/runtime/init/error")
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .body(serde_json::to_vec(&diagnostic)?.into())?;
        let response = client.call(request).await?;
        if !response.status().is_success() {
            return Err(format!("the Runtime API answered {}", response.status()).into());
        }
        Ok::<_, lambda_runtime::Error>(())
    };
    if let Err(e) = sent.await {
        tracing::error!(error = %e, "could not report the start-up failure to the Lambda Runtime API");
    }
}

/// The function's configuration, or, when it is bad, the error logged and
/// reported to Lambda ([`report_init_error`]) and returned for `main` to
/// exit with: every function starts this way.
pub async fn configured<T, E>(loaded: Result<T, E>) -> Result<T, lambda_runtime::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match loaded {
        Ok(config) => Ok(config),
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            report_init_error("ConfigError", &e).await;
            Err(e.into())
        }
    }
}
