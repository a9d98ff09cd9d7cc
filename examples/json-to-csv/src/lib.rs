//! POST a JSON array of employees, get it back as a CSV attachment.
//!
//! ```text
//! [{"name": "Ada", "age": 36, "jobTitle": "Engineer", "badgeNumber": "A-1"}]
//! ```
//! Other methods get 405 (with `Allow: POST`); a body that is not such an array gets 400 with
//! the reason.

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
    fn handle(mut request: Request) -> Result<Response> {
        if *request.method() != Method::Post {
            return Err(Error::method_not_allowed(&[Method::Post]));
        }
        let employees: Vec<Employee> = request.json()?;
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
        Ok(Response::bytes("text/csv; charset=utf-8", csv)
            .with_header("content-disposition", "attachment; filename=\"employees.csv\""))
    }
}

/// Quote a CSV field when it holds a separator, a quote, a line break or edge spaces (RFC 4180).
fn field(value: &str) -> String {
    let needs_quotes = value.contains([',', '"', '\n', '\r'])
        || value.starts_with(' ')
        || value.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

outpost_sdk::export!(JsonToCsv);

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(field("Ada"), "Ada");
        assert_eq!(field("Lovelace, Ada"), "\"Lovelace, Ada\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(" padded"), "\" padded\"");
    }
}
