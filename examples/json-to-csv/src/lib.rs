//! POST a JSON array of employees, get it back as a CSV attachment.
//!
//! ```text
//! [{"name": "Ada", "age": 36, "jobTitle": "Engineer", "badgeNumber": "A-1"}]
//! ```
//! Other methods get 405 (with `Allow: POST`); a body that is not such an array gets 400 with
//! the reason.

use outpost_sdk::prelude::*;
use outpost_sdk::{Error, Handler, Method, Request, Response, Result};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Employee {
    name: String,
    age: u32,
    job_title: String,
    badge_number: BadgeNumber,
}

/// Badge numbers come as strings ("A-17") or plain numbers (17).
#[derive(Deserialize)]
#[serde(untagged)]
enum BadgeNumber {
    Text(String),
    Number(u64),
}

impl BadgeNumber {
    fn to_text(&self) -> String {
        match self {
            BadgeNumber::Text(text) => text.clone(),
            BadgeNumber::Number(number) => number.to_string(),
        }
    }
}

struct JsonToCsv;

impl Handler for JsonToCsv {
    async fn handle(request: Request) -> Result<Response> {
        if request.method() != Method::POST {
            return Err(Error::method_not_allowed(&[Method::POST]));
        }
        let employees: Vec<Employee> = request.into_body().json().await?;
        let mut csv = String::from("name,age,jobTitle,badgeNumber\r\n");
        for employee in &employees {
            let row = [
                field(&employee.name),
                employee.age.to_string(),
                field(&employee.job_title),
                field(&employee.badge_number.to_text()),
            ];
            csv.push_str(&row.join(","));
            csv.push_str("\r\n");
        }
        Response::bytes("text/csv; charset=utf-8", csv).with_header(
            "content-disposition",
            "attachment; filename=\"employees.csv\"",
        )
    }
}

/// Quote a CSV field when it holds a separator, a quote, a line break or edge spaces (RFC 4180).
fn field(value: &str) -> String {
    let needs_quotes =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

outpost_sdk::export!(JsonToCsv);

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_sdk::{StatusCode, testing};

    fn post(body: &'static str) -> Response {
        testing::call::<JsonToCsv>(Request::post("/").body(body.into()).unwrap())
    }

    #[test]
    fn an_array_of_employees_becomes_csv() {
        let response =
            post(r#"[{"name": "Ada, L", "age": 36, "jobTitle": "Engineer", "badgeNumber": 7}]"#);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/csv; charset=utf-8"
        );
        let csv = testing::block_on(response.into_body().text()).unwrap();
        assert_eq!(
            csv,
            "name,age,jobTitle,badgeNumber\r\n\"Ada, L\",36,Engineer,7\r\n"
        );
    }

    #[test]
    fn bad_input_and_other_methods_are_refused() {
        let response = post(r#"{"name": "not an array"}"#);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = testing::call::<JsonToCsv>(Request::get("/").body(().into()).unwrap());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["allow"], "POST");
    }

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("Ada"), "Ada");
        assert_eq!(field("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(" padded"), "\" padded\"");
    }
}
