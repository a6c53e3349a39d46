"""The pipeline page (being built)."""

import streamlit as st

st.title("pipeline")
