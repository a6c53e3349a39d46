"""The schema page (being built)."""

import streamlit as st

st.title("schema")
