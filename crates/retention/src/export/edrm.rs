//! EDRM XML 1.2: one `Document` per message and per attachment, with its
//! fields as `Tag`s, its native file (path, size, SHA-256) as an
//! `ExternalFile`, and each attachment tied to its message by an
//! `Attachment` `Relationship` (the family).

use std::fmt::Write as _;

/// A document for the XML.
pub struct Document {
    /// Its id (the DAT's DOCID).
    pub doc_id: String,
    /// `Message` or `File`.
    pub doc_type: &'static str,
    /// Its media type.
    pub mime_type: String,
    /// Fields: name, type (`Text`, `DateTime`, `Integer`), value.
    pub tags: Vec<(&'static str, &'static str, String)>,
    /// The native: directory, file name, size, SHA-256 (hex).
    pub native: Option<(String, String, u64, String)>,
}

/// XML 1.0 cannot carry most control characters, even escaped.
fn attr(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')).collect();
    quick_xml::escape::escape(clean.as_str()).replace('\n', "&#10;").replace('\r', "&#13;").replace('\t', "&#9;")
}

/// The whole file.
pub fn render(batch: &str, documents: &[Document], families: &[(String, String)]) -> String {
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<Root MajorVersion=\"1\" MinorVersion=\"2\" Description=\"Strongroom retention export\" Locale=\"en-US\" DataInterchangeType=\"Update\">\n");
    let _ = writeln!(x, " <Batch name=\"{}\">", attr(batch));
    x.push_str("  <Documents>\n");
    for d in documents {
        let _ = writeln!(
            x,
            "   <Document DocID=\"{}\" DocType=\"{}\" MimeType=\"{}\">",
            attr(&d.doc_id),
            d.doc_type,
            attr(&d.mime_type)
        );
        x.push_str("    <Tags>\n");
        for (name, kind, value) in &d.tags {
            let _ = writeln!(x, "     <Tag TagName=\"{name}\" TagDataType=\"{kind}\" TagValue=\"{}\"/>", attr(value));
        }
        x.push_str("    </Tags>\n");
        if let Some((dir, name, size, sha256)) = &d.native {
            x.push_str("    <Files>\n     <File FileType=\"Native\">\n");
            let _ = writeln!(
                x,
                "      <ExternalFile FilePath=\"{}\" FileName=\"{}\" FileSize=\"{size}\" Hash=\"{sha256}\" HashType=\"SHA256\"/>",
                attr(dir),
                attr(name)
            );
            x.push_str("     </File>\n    </Files>\n");
        }
        x.push_str("   </Document>\n");
    }
    x.push_str("  </Documents>\n  <Relationships>\n");
    for (parent, child) in families {
        let _ = writeln!(
            x,
            "   <Relationship Type=\"Attachment\" ParentDocID=\"{}\" ChildDocID=\"{}\"/>",
            attr(parent),
            attr(child)
        );
    }
    x.push_str("  </Relationships>\n </Batch>\n</Root>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_inside_their_attribute() {
        let doc = Document {
            doc_id: "SR1".into(),
            doc_type: "Message",
            mime_type: "message/rfc822".into(),
            tags: vec![("#Subject", "Text", "a\"/><Evil x=\"&\u{0}\nline".into())],
            native: None,
        };
        let xml = render("b", &[doc], &[]);
        assert!(xml.contains("TagValue=\"a&quot;/&gt;&lt;Evil x=&quot;&amp;&#10;line\""), "{xml}");
        let mut r = quick_xml::Reader::from_str(&xml);
        let mut tags = 0;
        loop {
            match r.read_event().unwrap() {
                quick_xml::events::Event::Empty(e) if e.name().as_ref() == b"Tag" => tags += 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(tags, 1);
    }
}
