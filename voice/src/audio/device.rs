//! Real audio devices through cpal (filled in below).
