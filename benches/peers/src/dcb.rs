//! W10, the course-enrolment workload shared by every peer: which student
//! asks for which course, the decision taken on the events a DCB query
//! read, and the check of both limits after a run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::{R, Sizes, err};

/// The event that defines a course and its capacity (tag `course:C`).
pub const COURSE_DEFINED: &str = "CourseDefined";
/// The event of one enrolment (tags `student:S` and `course:C`).
pub const STUDENT_ENROLLED: &str = "StudentEnrolled";
/// Attempts of one decision before the harness gives up on it.
pub const MAX_RETRIES: u64 = 10_000;

/// Payload of [`COURSE_DEFINED`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Course {
    pub course: u64,
    pub capacity: u64,
}

/// Payload of [`STUDENT_ENROLLED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Enrolment {
    pub student: u64,
    pub course: u64,
}

pub fn course_tag(c: u64) -> String {
    format!("course:{c}")
}

pub fn student_tag(s: u64) -> String {
    format!("student:{s}")
}

/// The JSON payload of a course definition.
pub fn course_payload(c: u64, s: &Sizes) -> R<Vec<u8>> {
    serde_json::to_vec(&Course { course: c, capacity: s.w10_capacity }).map_err(err("json"))
}

/// The JSON payload of an enrolment.
pub fn enrolment_payload(e: Enrolment) -> R<Vec<u8>> {
    serde_json::to_vec(&e).map_err(err("json"))
}

/// The (student, course) of attempt `i` of client `p`: the same sequence
/// for every peer.
pub fn pair(s: &Sizes, p: u64, i: u64) -> Enrolment {
    let mut x = (p << 32 | i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    Enrolment { student: (x >> 32) % s.w10_students.max(1), course: (x & 0xFFFF_FFFF) % s.w10_courses.max(1) }
}

/// What a decision concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Enrol,
    CourseFull,
    StudentFull,
    Already,
    NoCourse,
}

/// The decision on the events the query read (in any order): the course's
/// definition and enrolments, the student's enrolments.
pub fn decide<'a>(
    want: Enrolment,
    events: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    s: &Sizes,
) -> R<Verdict> {
    let (mut capacity, mut in_course, mut of_student) = (None, 0u64, 0u64);
    for (ty, payload) in events {
        match ty {
            COURSE_DEFINED => {
                let c: Course = serde_json::from_slice(payload).map_err(err("json"))?;
                if c.course == want.course {
                    capacity = Some(c.capacity);
                }
            }
            STUDENT_ENROLLED => {
                let e: Enrolment = serde_json::from_slice(payload).map_err(err("json"))?;
                if e == want {
                    return Ok(Verdict::Already);
                }
                in_course += u64::from(e.course == want.course);
                of_student += u64::from(e.student == want.student);
            }
            other => return Err(format!("W10 query returned an event of type {other:?}")),
        }
    }
    Ok(match capacity {
        None => Verdict::NoCourse,
        Some(cap) if in_course >= cap => Verdict::CourseFull,
        _ if of_student >= s.w10_max_courses => Verdict::StudentFull,
        _ => Verdict::Enrol,
    })
}

/// What one client (or a whole run) did.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub enrolled: u64,
    pub course_full: u64,
    pub student_full: u64,
    pub already: u64,
    /// Appends refused by the condition (or serialisation failures), each
    /// followed by a new read and decision.
    pub retries: u64,
    /// The time of each decision, from its first read to its outcome.
    pub latencies: Vec<Duration>,
}

impl Tally {
    pub fn count(&mut self, v: Verdict) -> R<()> {
        match v {
            Verdict::Enrol => self.enrolled += 1,
            Verdict::CourseFull => self.course_full += 1,
            Verdict::StudentFull => self.student_full += 1,
            Verdict::Already => self.already += 1,
            Verdict::NoCourse => return Err("W10: a course was not defined".into()),
        }
        Ok(())
    }

    pub fn add(&mut self, o: Tally) {
        self.enrolled += o.enrolled;
        self.course_full += o.course_full;
        self.student_full += o.student_full;
        self.already += o.already;
        self.retries += o.retries;
        self.latencies.extend(o.latencies);
    }

    pub fn describe(&self) -> String {
        format!(
            "{} enrolled, refused {} (course full), {} (student at the maximum), {} (already enrolled); {} retries",
            self.enrolled, self.course_full, self.student_full, self.already, self.retries
        )
    }
}

/// W10's result for one peer: the tally, the wall time, and what the check
/// after the run found broken (empty when both limits held).
pub struct Outcome {
    pub tally: Tally,
    pub wall: Duration,
    pub broken: Vec<String>,
    /// How the store grouped the appends, where it says (eventfold).
    pub writer: Option<String>,
}

/// Checks every enrolment the store holds against both limits and against
/// what the clients counted; returns what is broken.
pub fn verify(stored: &[Enrolment], tally: &Tally, s: &Sizes) -> Vec<String> {
    let mut broken = Vec::new();
    let mut per_course: HashMap<u64, u64> = HashMap::new();
    let mut per_student: HashMap<u64, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for e in stored {
        *per_course.entry(e.course).or_default() += 1;
        *per_student.entry(e.student).or_default() += 1;
        if !seen.insert(*e) {
            broken.push(format!("student {} is enrolled twice in course {}", e.student, e.course));
        }
    }
    for (c, n) in &per_course {
        if *n > s.w10_capacity {
            broken.push(format!("course {c} has {n} students, capacity {}", s.w10_capacity));
        }
    }
    for (st, n) in &per_student {
        if *n > s.w10_max_courses {
            broken.push(format!("student {st} is in {n} courses, maximum {}", s.w10_max_courses));
        }
    }
    if stored.len() as u64 != tally.enrolled {
        broken.push(format!(
            "the store holds {} enrolments, the clients made {}",
            stored.len(),
            tally.enrolled
        ));
    }
    broken.truncate(20);
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Sizes {
        let mut s = Sizes::quick();
        s.w10_capacity = 2;
        s.w10_max_courses = 2;
        s
    }

    #[test]
    fn decisions_respect_both_limits() {
        let s = sizes();
        let course = course_payload(1, &s).expect("json");
        let e = |student, course| enrolment_payload(Enrolment { student, course }).expect("json");
        let (a, b, c) = (e(1, 1), e(2, 1), e(3, 2));
        let want = Enrolment { student: 3, course: 1 };
        let read = |evs: &[(&'static str, &[u8])]| decide(want, evs.iter().copied(), &s).expect("decide");
        assert_eq!(read(&[(COURSE_DEFINED, &course)]), Verdict::Enrol);
        assert_eq!(read(&[]), Verdict::NoCourse);
        assert_eq!(
            read(&[(COURSE_DEFINED, &course), (STUDENT_ENROLLED, &a), (STUDENT_ENROLLED, &b)]),
            Verdict::CourseFull
        );
        let d = e(3, 3);
        assert_eq!(
            read(&[(COURSE_DEFINED, &course), (STUDENT_ENROLLED, &c), (STUDENT_ENROLLED, &d)]),
            Verdict::StudentFull
        );
        let again = e(3, 1);
        assert_eq!(read(&[(COURSE_DEFINED, &course), (STUDENT_ENROLLED, &again)]), Verdict::Already);
    }

    #[test]
    fn the_check_finds_every_broken_limit() {
        let s = sizes();
        let e = |student, course| Enrolment { student, course };
        let tally = Tally { enrolled: 3, ..Tally::default() };
        assert!(verify(&[e(1, 1), e(2, 1), e(1, 2)], &tally, &s).is_empty());
        let over_capacity = verify(&[e(1, 1), e(2, 1), e(3, 1)], &tally, &s);
        assert!(over_capacity.iter().any(|b| b.contains("capacity")), "{over_capacity:?}");
        let over_max = verify(&[e(1, 1), e(1, 2), e(1, 3)], &tally, &s);
        assert!(over_max.iter().any(|b| b.contains("maximum")), "{over_max:?}");
        let twice = verify(&[e(1, 1), e(1, 1), e(2, 2)], &tally, &s);
        assert!(twice.iter().any(|b| b.contains("twice")), "{twice:?}");
        let lost = verify(&[e(1, 1)], &tally, &s);
        assert!(lost.iter().any(|b| b.contains("the clients made")), "{lost:?}");
    }
}
