# The backend seam (include/th/backend/): no th::cpu call or memcpy of model data around it in the
# model and the optimizer path (tests/scripts/check_backend_seam.sh); the dynamic check is
# tests/unit/test_backend.cpp.
include_guard(GLOBAL)
add_test(NAME backend_seam
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/../scripts/check_backend_seam.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(backend_seam PROPERTIES LABELS "unit" TIMEOUT 60)
